// The page test/browser.test.ts opens in Chromium: a stand-in for Grafana's plugin loader that
// does what Grafana does, with the real npm packages. Grafana loads SystemJS with its AMD and
// named-register extras (public/app/features/plugins/loader/systemjs.ts), registers each shared
// module as `package:<name>` and maps the bare name to it (buildImportMap in
// public/app/features/plugins/loader/utils.ts, over sharedDependenciesMap in sharedDependencies.ts),
// then System.import()s the plugin's module.js. The editors are then rendered the way Grafana's
// datasource settings page and query editor row use them: controlled by the host, which passes
// every onOptionsChange / onChange value back in.
import * as grafanaData from '@grafana/data';
import * as grafanaRuntime from '@grafana/runtime';
import * as grafanaUi from '@grafana/ui';
import * as React from 'react';
import * as ReactDOM from 'react-dom';
import * as ReactDOMClient from 'react-dom/client';
import * as rxjs from 'rxjs';
import * as rxjsOperators from 'rxjs/operators';

interface SystemJSLike {
  set(id: string, module: object): void;
  addImportMap(map: { imports: Record<string, string> }): void;
  import(id: string): Promise<Record<string, unknown>>;
}

interface HostWindow {
  System: SystemJSLike;
  __runlens: {
    ready: boolean;
    error?: string;
    configCalls: unknown[];
    queryCalls: unknown[];
    runQueryCalls: number;
  };
}

const win = window as unknown as HostWindow;
win.__runlens = { ready: false, configCalls: [], queryCalls: [], runQueryCalls: 0 };

// Grafana's shared modules (a subset of sharedDependenciesMap: what a datasource plugin uses).
const shared: Record<string, object> = {
  '@grafana/data': grafanaData,
  '@grafana/runtime': grafanaRuntime,
  '@grafana/ui': grafanaUi,
  react: React,
  'react-dom': ReactDOM,
  rxjs,
  'rxjs/operators': rxjsOperators,
};

function registerShared() {
  const imports: Record<string, string> = {};
  for (const [name, mod] of Object.entries(shared)) {
    const id = `package:${name}`;
    win.System.set(id, mod);
    imports[name] = id;
  }
  win.System.addImportMap({ imports });
}

const settings: grafanaData.DataSourceSettings<Record<string, unknown>, Record<string, unknown>> = {
  id: 1,
  uid: 'runlens',
  orgId: 1,
  name: 'runlens',
  type: 'runlens-topology-datasource',
  typeName: 'runlens topology',
  typeLogoUrl: '',
  access: 'proxy',
  url: '',
  user: '',
  database: '',
  basicAuth: false,
  basicAuthUser: '',
  isDefault: false,
  withCredentials: false,
  readOnly: false,
  jsonData: { exchange: 'chef_reports' },
  secureJsonFields: { amqpPassword: true },
} as never;

type Editor = React.ComponentType<Record<string, unknown>>;

function ConfigHost({ Editor }: { Editor: Editor }) {
  const [options, setOptions] = React.useState(settings);
  return (
    <Editor
      options={options}
      onOptionsChange={(next: typeof settings) => {
        win.__runlens.configCalls.push(next);
        setOptions(next);
      }}
    />
  );
}

function QueryHost({ Editor, datasource }: { Editor: Editor; datasource: unknown }) {
  const [query, setQuery] = React.useState<Record<string, unknown>>({ refId: 'A', queryType: 'topology' });
  return (
    <Editor
      query={query}
      datasource={datasource}
      onChange={(next: Record<string, unknown>) => {
        win.__runlens.queryCalls.push(next);
        setQuery(next);
      }}
      onRunQuery={() => {
        win.__runlens.runQueryCalls++;
      }}
    />
  );
}

async function main() {
  registerShared();
  const mod = await win.System.import('/plugin/module.js');
  const plugin = mod.plugin as grafanaData.DataSourcePlugin<never>;
  if (!(plugin instanceof grafanaData.DataSourcePlugin)) {
    throw new Error('module.js does not export a DataSourcePlugin named plugin');
  }
  const DataSourceClass = plugin.DataSourceClass as unknown as new (s: unknown) => unknown;
  const datasource = new DataSourceClass({ ...settings, meta: { id: settings.type }, jsonData: settings.jsonData });
  // as on a Grafana with [secure_socks_datasource_proxy] enabled, so its settings section shows
  grafanaRuntime.config.secureSocksDSProxyEnabled = true;
  const theme = grafanaData.createTheme({ colors: { mode: 'dark' } });
  document.body.style.background = theme.colors.background.primary;
  document.body.style.color = theme.colors.text.primary;
  const root = ReactDOMClient.createRoot(document.getElementById('root')!);
  root.render(
    <grafanaUi.ThemeContext.Provider value={theme}>
      <grafanaUi.GlobalStyles />
      <div style={{ padding: 16, maxWidth: 1100 }}>
        <h2>Query editor</h2>
        <div id="query-editor">
          <QueryHost Editor={plugin.components.QueryEditor as unknown as Editor} datasource={datasource} />
        </div>
        <h2 style={{ marginTop: 24 }}>Settings</h2>
        <div id="config-editor">
          <ConfigHost Editor={plugin.components.ConfigEditor as unknown as Editor} />
        </div>
      </div>
    </grafanaUi.ThemeContext.Provider>
  );
  win.__runlens.ready = true;
}

main().catch((err: unknown) => {
  win.__runlens.error = err instanceof Error ? `${err.message}\n${err.stack}` : String(err);
});
