// The modules dist/module.js leaves to Grafana: exactly those the plugin imports that Grafana's
// SystemJS registry shares with plugins (grafana/grafana
// public/app/features/plugins/loader/sharedDependencies.ts, `sharedDependenciesMap`). Everything
// else the plugin needs is bundled: a module that is not in Grafana's registry fails to load
// (e.g. @grafana/schema, which Grafana does not share). test/module-amd.test.ts checks the built
// module's AMD dependencies against Grafana's list (test/grafana-shared-modules.ts), and that this
// list names nothing the module does not import.
export const EXTERNALS = ['@grafana/data', '@grafana/runtime', '@grafana/ui', 'react'];
