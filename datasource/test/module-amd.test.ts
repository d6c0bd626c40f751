// Loads dist/module.js the way Grafana's SystemJS AMD loader does: evaluates it with a define()
// shim, checks it only depends on modules Grafana's registry provides (grafana/grafana
// public/app/features/plugins/loader/sharedDependencies.ts, see grafana-shared-modules.ts), and that
// it exports `plugin`. test/browser.test.ts loads the same file through the real SystemJS in Chromium.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as grafanaData from '@grafana/data';
import * as grafanaRuntime from '@grafana/runtime';
import * as grafanaUi from '@grafana/ui';
import * as React from 'react';

import { EXTERNALS } from '../externals.mjs';
import { dist, modulePath } from './build';
import { GRAFANA_SHARED_MODULES } from './grafana-shared-modules';

/** AMD's own pseudo-dependencies, provided by the loader itself. */
const AMD_BUILTINS = ['exports', 'require', 'module'];

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
  it('is an anonymous AMD module depending only on what Grafana provides', () => {
    const def = captureDefine(readFileSync(modulePath, 'utf8'));
    expect(def.named).toBeUndefined();
    expect(typeof def.factory).toBe('function');
    const external = def.deps.filter((d) => !AMD_BUILTINS.includes(d));
    expect(external.length).toBeGreaterThan(0);
    // Grafana's own list, not externals.mjs: a name missing from its registry fails to load.
    const notShared = external.filter((d) => !GRAFANA_SHARED_MODULES.includes(d));
    expect(notShared).toEqual([]);
    // externals.mjs names exactly what the module imports from Grafana, nothing it does not use.
    expect([...external].sort()).toEqual([...EXTERNALS].sort());
  });

  it('the shared-module list rejects what Grafana does not share', () => {
    // @grafana/schema is bundled into @grafana/ui and @grafana/data; Grafana does not share it.
    expect(GRAFANA_SHARED_MODULES).not.toContain('@grafana/schema');
    expect(GRAFANA_SHARED_MODULES).toEqual(expect.arrayContaining(['@grafana/data', '@grafana/runtime', '@grafana/ui', 'react']));
  });

  it('exports a datasource plugin when given the shared modules', () => {
    const def = captureDefine(readFileSync(modulePath, 'utf8'));
    const shared: Record<string, unknown> = {
      '@grafana/data': grafanaData,
      '@grafana/runtime': grafanaRuntime,
      '@grafana/ui': grafanaUi,
      // Grafana's SystemJS hands AMD modules the value itself (__useDefault), not a namespace
      react: (React as { default?: unknown }).default ?? React,
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
