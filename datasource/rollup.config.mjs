// Builds dist/module.js as an AMD module, the format Grafana's SystemJS plugin loader expects,
// with everything Grafana itself provides to plugins left as external dependencies.
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import esbuild from 'rollup-plugin-esbuild';

import { EXTERNALS } from './externals.mjs';

export { EXTERNALS };

const production = process.env.NODE_ENV !== 'development';

/** Copies what Grafana reads next to module.js: plugin.json, the README and the logo. */
function copyAssets() {
  return {
    name: 'runlens-copy-assets',
    buildStart() {
      rmSync('dist/img', { recursive: true, force: true });
      rmSync('dist/module.js', { force: true });
      rmSync('dist/module.js.map', { force: true });
    },
    writeBundle() {
      mkdirSync('dist', { recursive: true });
      cpSync('plugin.json', 'dist/plugin.json');
      cpSync('README.md', 'dist/README.md');
      cpSync('img', 'dist/img', { recursive: true });
    },
  };
}

export default {
  input: 'src/module.ts',
  external: (id) => EXTERNALS.includes(id),
  plugins: [
    esbuild({
      include: /\.[jt]sx?$/,
      target: 'es2020',
      jsx: 'transform',
      jsxFactory: 'React.createElement',
      jsxFragment: 'React.Fragment',
      minify: production,
      sourceMap: true,
      tsconfig: 'tsconfig.json',
    }),
    copyAssets(),
  ],
  output: {
    file: 'dist/module.js',
    format: 'amd',
    sourcemap: true,
    // Grafana loads the module anonymously (System.import of its URL): no module id.
    interop: 'auto',
  },
  onwarn(warning, warn) {
    // An import that is neither bundled nor an external would fail in Grafana: make it an error.
    if (warning.code === 'UNRESOLVED_IMPORT') {
      throw new Error(`unresolved import ${warning.exporter ?? warning.message}: add it to EXTERNALS or bundle it`);
    }
    warn(warning);
  },
};
