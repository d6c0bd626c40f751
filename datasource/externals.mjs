// Modules Grafana shares with plugins at run time (its SystemJS registry): never bundled.
// Used by rollup.config.mjs and by the test that loads dist/module.js.
export const EXTERNALS = [
  '@grafana/data',
  '@grafana/runtime',
  '@grafana/ui',
  '@grafana/schema',
  'react',
  'react-dom',
  'rxjs',
  'rxjs/operators',
  'lodash',
  '@emotion/css',
];
