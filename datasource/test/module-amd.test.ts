// Loads dist/module.js the way Grafana's SystemJS AMD loader does: evaluates it with a define()
// shim, checks it only depends on modules Grafana provides, and that it exports `plugin`.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import * as grafanaData from '@grafana/data';
import * as grafanaRuntime from '@grafana/runtime';
import * as grafanaUi from '@grafana/ui';
import * as React from 'react';
import * as ReactDOM from 'react-dom';
import * as rxjs from 'rxjs';
import * as rxjsOperators from 'rxjs/operators';

import { EXTERNALS } from '../externals.mjs';

const root = resolve(__dirname, '..');
const dist = resolve(root, 'dist');
const modulePath = resolve(dist, 'module.js');

/** AMD's own pseudo-dependencies, provided by the loader itself. */
const AMD_BUILTINS = ['exports', 'require', 'module'];

function ensureBuilt() {
  const newestSource = ['src', 'plugin.json', 'rollup.config.mjs']
    .map((p) => resolve(root, p))
    .map((p) => statSync(p).mtimeMs)
    .reduce((a, b) => Math.max(a, b), 0);
  if (!existsSync(modulePath) || statSync(modulePath).mtimeMs < newestSource) {
    execFileSync(process.execPath, [resolve(root, 'node_modules/rollup/dist/bin/rollup'), '-c', 'rollup.config.mjs'], {
      cwd: root,
      stdio: 'pipe',
    });
  }
}

interface Definition {
  deps: string[];
  factory: (...args: unknown[]) => unknown;
  named?: string;
}

function captureDefine(source: string): Definition {
  const defs: Definition[] = [];
  function define(...args: unknown[]) {
    const named = typeof args[0] === 'string' ? (args.shift() as string) : undefined;
    const deps = Array.isArray(args[0]) ? (args.shift() as string[]) : [];
    defs.push({ deps, factory: args[0] as Definition['factory'], named });
  }
  (define as unknown as { amd: object }).amd = {};
  new Function('define', source)(define);
  expect(defs).toHaveLength(1);
  return defs[0];
}

describe('dist/module.js', () => {
  beforeAll(() => {
    ensureBuilt();
  }, 120_000);

  it('is an anonymous AMD module depending only on what Grafana provides', () => {
    const def = captureDefine(readFileSync(modulePath, 'utf8'));
    expect(def.named).toBeUndefined();
    expect(typeof def.factory).toBe('function');
    const external = def.deps.filter((d) => !AMD_BUILTINS.includes(d));
    expect(external.length).toBeGreaterThan(0);
    for (const dep of external) {
      expect(EXTERNALS).toContain(dep);
    }
  });

  it('exports a datasource plugin when given the shared modules', () => {
    const def = captureDefine(readFileSync(modulePath, 'utf8'));
    const shared: Record<string, unknown> = {
      '@grafana/data': grafanaData,
      '@grafana/runtime': grafanaRuntime,
      '@grafana/ui': grafanaUi,
      // Grafana's SystemJS hands AMD modules the value itself (__useDefault), not a namespace
      react: (React as { default?: unknown }).default ?? React,
      'react-dom': (ReactDOM as { default?: unknown }).default ?? ReactDOM,
      rxjs,
      'rxjs/operators': rxjsOperators,
    };
    const exports: Record<string, unknown> = {};
    const args = def.deps.map((d) => {
      if (d === 'exports') {
        return exports;
      }
      if (!(d in shared)) {
        throw new Error(`test has no stand-in for ${d}`);
      }
      return shared[d];
    });
    const returned = def.factory(...args) as Record<string, unknown> | undefined;
    const mod = returned ?? exports;
    const plugin = mod.plugin as grafanaData.DataSourcePlugin<never>;
    expect(plugin).toBeInstanceOf(grafanaData.DataSourcePlugin);
    expect(typeof plugin.DataSourceClass).toBe('function');
    expect(plugin.components.ConfigEditor).toBeDefined();
    expect(plugin.components.QueryEditor).toBeDefined();
  });

  it('ships plugin.json, README.md and the logo next to it', () => {
    expect(JSON.parse(readFileSync(resolve(dist, 'plugin.json'), 'utf8')).id).toBe('runlens-topology-datasource');
    expect(existsSync(resolve(dist, 'README.md'))).toBe(true);
    expect(existsSync(resolve(dist, 'img/logo.svg'))).toBe(true);
  });
});
