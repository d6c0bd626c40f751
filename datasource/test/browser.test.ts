// @vitest-environment node
//
// The built dist/module.js in a real browser: Debian's Chromium (/usr/bin/chromium, driven by
// playwright-core; no browser is downloaded) opens a page that loads SystemJS with Grafana's
// extras, registers the real @grafana/*, React and rxjs from npm as Grafana's shared modules, and
// System.import()s module.js (test/browser/host.tsx says how each step follows Grafana's loader).
// The config and query editors must render and answer typing and clicks with the new values.
// A screenshot of both lands in datasource/test-artifacts/editors.png (git-ignored).
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { build } from 'esbuild';
import { BrowserContext, chromium, Page } from 'playwright-core';

import { modulePath, root } from './build';

const CHROMIUM = '/usr/bin/chromium';
/** The flags every headless run here uses; Playwright adds --user-data-dir (a fresh one) itself. */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Generous: the page loads a several-megabyte bundle on a shared two-core machine. */
const WAIT_MS = Number(process.env.RUNLENS_BROWSER_WAIT_MS ?? 60_000);

export const SCREENSHOT = resolve(root, 'test-artifacts/editors.png');

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.map': 'application/json',
};

interface HostState {
  ready: boolean;
  error?: string;
  configCalls: Array<{ jsonData: Record<string, unknown>; secureJsonData?: Record<string, unknown> }>;
  queryCalls: Array<Record<string, unknown>>;
  runQueryCalls: number;
}

let workDir: string;
let server: Server;
let baseUrl: string;
let context: BrowserContext;
let page: Page;
const pageErrors: string[] = [];
const consoleLines: string[] = [];

/** Serves the page, the host bundle, SystemJS from node_modules and the plugin's dist/. */
function serve(files: Record<string, string>): Promise<string> {
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const file = files[path];
    if (!file) {
      consoleLines.push(`server: 404 ${path}`);
      res.writeHead(404).end();
      return;
    }
    try {
      const body = readFileSync(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((ok) =>
    server.listen(0, '127.0.0.1', () => ok(`http://127.0.0.1:${(server.address() as AddressInfo).port}`))
  );
}

async function hostState(): Promise<HostState> {
  return page.evaluate(() => (window as unknown as { __runlens: HostState }).__runlens);
}

/** Waits until the page's recorded calls satisfy a condition (checked in the page). */
async function waitForCalls(predicate: string) {
  await page.waitForFunction(predicate, undefined, { timeout: WAIT_MS, polling: 50 });
}

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'runlens-browser-'));
  // The host page's bundle: the real npm packages, as the browser gets them in Grafana.
  await build({
    entryPoints: [resolve(__dirname, 'browser/host.tsx')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    outfile: join(workDir, 'host.js'),
    jsx: 'transform',
    jsxFactory: 'React.createElement',
    jsxFragment: 'React.Fragment',
    // `define: undefined`: UMD files in the bundle (lodash) must not see SystemJS's global AMD
    // define() and register themselves with it instead of exporting; Grafana's webpack build
    // likewise resolves them at build time.
    define: { 'process.env.NODE_ENV': '"production"', global: 'window', define: 'undefined' },
    loader: { '.svg': 'dataurl', '.ttf': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl', '.png': 'dataurl' },
    logLevel: 'error',
  });
  const systemjs = resolve(root, 'node_modules/systemjs/dist');
  baseUrl = await serve({
    '/': resolve(__dirname, 'browser/index.html'),
    '/host.js': join(workDir, 'host.js'),
    '/host.css': join(workDir, 'host.css'),
    '/systemjs/system.js': join(systemjs, 'system.js'),
    '/systemjs/extras/amd.js': join(systemjs, 'extras/amd.js'),
    '/systemjs/extras/named-register.js': join(systemjs, 'extras/named-register.js'),
    '/plugin/module.js': modulePath,
    '/plugin/module.js.map': `${modulePath}.map`,
  });

  const userDataDir = join(workDir, 'profile');
  mkdirSync(userDataDir);
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1200, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
  await page.goto(`${baseUrl}/`, { timeout: WAIT_MS });
  try {
    await page.waitForFunction(
      () => {
        const s = (window as unknown as { __runlens?: HostState }).__runlens;
        return !!s && (s.ready || !!s.error);
      },
      undefined,
      { timeout: WAIT_MS }
    );
  } catch (err) {
    throw new Error(`the page never got ready: ${String(err)}\npage errors: ${pageErrors.join('\n')}\nconsole:\n${consoleLines.join('\n')}`);
  }
  const state = await hostState();
  if (state.error) {
    throw new Error(`the page failed to load the plugin: ${state.error}`);
  }
}, 180_000);

afterAll(async () => {
  await context?.close();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  if (workDir) {
    rmSync(workDir, { recursive: true, force: true });
  }
});

describe('module.js in Chromium through SystemJS', () => {
  it('renders both editors without a page error', async () => {
    await page.locator('#config-editor #runlens-amqpUrl').waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.locator('#query-editor').getByRole('radio', { name: 'Topology' }).waitFor({ timeout: WAIT_MS });
    for (const label of ['AMQP URL', 'AMQP client key', 'Change gap', 'Highlight score', 'Group by role above']) {
      await page.getByText(label, { exact: true }).first().waitFor({ state: 'visible', timeout: WAIT_MS });
    }
    // the saved password shows as configured, not as its value
    expect(await page.locator('#runlens-amqpPassword').inputValue()).toBe('configured');
    expect(pageErrors).toEqual([]);
  });

  it('the config editor answers typing with onOptionsChange', async () => {
    await page.locator('#runlens-amqpUrl').fill('amqps://runlens@rabbit:5671/');
    await waitForCalls(
      `window.__runlens.configCalls.some((c) => c.jsonData.amqpUrl === 'amqps://runlens@rabbit:5671/')`
    );
    await page.locator('#runlens-amqpTlsServerName').pressSequentially('rabbit.internal');
    await waitForCalls(
      `window.__runlens.configCalls.some((c) => c.jsonData.amqpTlsServerName === 'rabbit.internal')`
    );
    await page.locator('#runlens-amqpTlsClientKey').fill('-----BEGIN PRIVATE KEY-----\nMC4\n-----END PRIVATE KEY-----');
    await waitForCalls(
      `window.__runlens.configCalls.some((c) => (c.secureJsonData?.amqpTlsClientKey ?? '').startsWith('-----BEGIN PRIVATE KEY-----'))`
    );
    await page.locator('#runlens-groupByRoleAbove').fill('500');
    await waitForCalls(`window.__runlens.configCalls.some((c) => c.jsonData.groupByRoleAbove === 500)`);
    // a person clicks the drawn switch: @grafana/ui's InlineSwitch draws it as the label after the input
    await page.locator('#runlens-amqpTlsSkipVerify + label').click({ timeout: WAIT_MS });
    await waitForCalls(`window.__runlens.configCalls.some((c) => c.jsonData.amqpTlsSkipVerify === true)`);
    expect(await page.getByRole('switch', { name: 'AMQP skip TLS verify' }).isChecked()).toBe(true);

    const last = (await hostState()).configCalls.at(-1)!;
    // every earlier edit is kept: the host passes each new options object back in, as Grafana does
    expect(last.jsonData).toMatchObject({
      exchange: 'chef_reports',
      amqpUrl: 'amqps://runlens@rabbit:5671/',
      amqpTlsServerName: 'rabbit.internal',
      groupByRoleAbove: 500,
      amqpTlsSkipVerify: true,
    });
    expect(JSON.stringify(last.jsonData)).not.toContain('PRIVATE KEY');
    expect(pageErrors).toEqual([]);
  });

  it("shows Grafana's secure socks proxy switch and sets enableSecureSocksProxy", async () => {
    const section = page.locator('div', { has: page.getByRole('heading', { name: 'Secure Socks Proxy' }) }).last();
    await section.locator('input[role="switch"] + label').click({ timeout: WAIT_MS });
    await waitForCalls(`window.__runlens.configCalls.some((c) => c.jsonData.enableSecureSocksProxy === true)`);
    expect(pageErrors).toEqual([]);
  });

  it('the query editor answers clicks and typing with onChange and runs the query', async () => {
    const editor = page.locator('#query-editor');
    await editor.getByRole('radio', { name: 'Auto' }).check({ timeout: WAIT_MS });
    await waitForCalls(`window.__runlens.queryCalls.some((q) => q.layout === 'auto')`);
    const node = editor.getByRole('textbox', { name: 'Node' });
    await node.fill('web-0[0-9]');
    await node.press('Enter');
    await waitForCalls(`window.__runlens.queryCalls.some((q) => q.node === 'web-0[0-9]')`);
    await editor.getByRole('radio', { name: 'Impact' }).check({ timeout: WAIT_MS });
    await editor.getByRole('radio', { name: 'Run', exact: true }).check({ timeout: WAIT_MS });
    await waitForCalls(`window.__runlens.queryCalls.some((q) => q.queryType === 'impact' && q.groupBy === 'run')`);

    const state = await hostState();
    expect(state.queryCalls.at(-1)).toEqual({
      refId: 'A',
      queryType: 'impact',
      groupBy: 'run',
      layout: 'auto',
      node: 'web-0[0-9]',
    });
    expect(state.runQueryCalls).toBe(state.queryCalls.length);
    expect(pageErrors).toEqual([]);
  });

  it('saves a screenshot of the editors', async () => {
    // back to topology so the shot shows group by and layout
    await page.locator('#query-editor').getByRole('radio', { name: 'Topology' }).check({ timeout: WAIT_MS });
    await page.getByRole('radio', { name: 'Pinned' }).waitFor({ state: 'visible', timeout: WAIT_MS });
    await page.mouse.move(1, 1); // no tooltip over the editors
    mkdirSync(resolve(root, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: WAIT_MS });
    expect(readFileSync(SCREENSHOT).subarray(1, 4).toString()).toBe('PNG');
    console.log(`screenshot of the editors: ${SCREENSHOT}`);
  });
});
