// Builds dist/module.js (npm run build) when it is missing or older than its sources, so the tests
// that load the built module also run on their own (npx vitest run test/...).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(__dirname, '..');
export const dist = resolve(root, 'dist');
export const modulePath = resolve(dist, 'module.js');

function newestMtime(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) {
    return st.mtimeMs;
  }
  return readdirSync(path)
    .map((name) => newestMtime(join(path, name)))
    .reduce((a, b) => Math.max(a, b), st.mtimeMs);
}

export function ensureBuilt() {
  const newestSource = ['src', 'plugin.json', 'rollup.config.mjs', 'externals.mjs', 'README.md', 'img']
    .map((p) => newestMtime(resolve(root, p)))
    .reduce((a, b) => Math.max(a, b), 0);
  if (!existsSync(modulePath) || statSync(modulePath).mtimeMs < newestSource) {
    execFileSync(process.execPath, [resolve(root, 'node_modules/rollup/dist/bin/rollup'), '-c', 'rollup.config.mjs'], {
      cwd: root,
      stdio: 'pipe',
    });
  }
}
