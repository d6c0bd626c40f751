// The module names Grafana's SystemJS registry provides to plugins: the keys of
// `sharedDependenciesMap` in grafana/grafana public/app/features/plugins/loader/sharedDependencies.ts,
// read at commit 0274a43c9f1026cea1ff11e4310ca87ea96d8fd5 (the newest stored) and at
// fea2b469c730d0081874d8cdaccefd118a51dfb4 (an earlier one). A plugin's AMD module may depend on
// these names and nothing else: any other name is fetched as a URL and fails to load.
// Only the names both versions share are allowed, so the plugin also loads in the older Grafana.

/** Keys of sharedDependenciesMap at 0274a43c (newest read). */
export const GRAFANA_SHARED_MODULES_NEWEST: readonly string[] = [
  '@emotion/css',
  '@emotion/react',
  '@grafana/data',
  '@grafana/data/unstable',
  '@grafana/runtime',
  '@grafana/runtime/unstable',
  '@grafana/slate-react',
  '@grafana/ui',
  '@grafana/ui/unstable',
  '@kusto/monaco-kusto',
  'app/core/app_events',
  'app/core/config',
  'app/core/core',
  'app/core/services/backend_srv',
  'app/core/table_model',
  'app/core/time_series',
  'app/core/time_series2',
  'app/core/utils/datemath',
  'app/core/utils/flatten',
  'app/core/utils/kbn',
  'app/core/utils/ticks',
  'app/features/dashboard/impression_store',
  'd3',
  'emotion',
  'i18next',
  'jquery',
  'jquery.flot.crosshair',
  'jquery.flot.events',
  'jquery.flot.fillbelow',
  'jquery.flot.gauge',
  'jquery.flot.pie',
  'jquery.flot.selection',
  'jquery.flot.stack',
  'jquery.flot.stackpercent',
  'jquery.flot.time',
  'jquery.flot',
  'lodash',
  'moment',
  'prismjs',
  'react',
  'react/jsx-runtime',
  'react/jsx-dev-runtime',
  'react-dom',
  'react-dom/client',
  'react-dom/server',
  'react-inlinesvg',
  'react-redux',
  'react-router-dom',
  'react-router',
  'redux',
  'rxjs',
  'rxjs/operators',
  'slate',
  'slate-plain-serializer',
  'slate-react',
];

/** Names the newest version added since fea2b469: an older Grafana does not provide them. */
export const GRAFANA_SHARED_MODULES_ADDED_LATELY: readonly string[] = [
  'react/jsx-runtime',
  'react/jsx-dev-runtime',
  'react-dom/client',
  'react-dom/server',
];

/** What a plugin may leave external and still load in both versions. */
export const GRAFANA_SHARED_MODULES: readonly string[] = GRAFANA_SHARED_MODULES_NEWEST.filter(
  (m) => !GRAFANA_SHARED_MODULES_ADDED_LATELY.includes(m)
);
