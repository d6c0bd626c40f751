import React from 'react';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';
import { config } from '@grafana/runtime';

import { RunlensOptions, RunlensSecureOptions } from '../types';
import {
  amqpUrlError,
  ConfigEditor,
  durationError,
  httpUrlError,
  scoreError,
  pemError,
  positiveIntegerError,
} from './ConfigEditor';

const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n';

type Settings = DataSourceSettings<RunlensOptions, RunlensSecureOptions>;

function settings(overrides: Partial<Settings> = {}): Settings {
  return {
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
    jsonData: {},
    secureJsonFields: {},
    ...overrides,
  } as Settings;
}

function setup(overrides: Partial<Settings> = {}) {
  const onOptionsChange = vi.fn();
  const options = settings(overrides);
  const { unmount } = render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
  return { onOptionsChange, options, unmount };
}

describe('ConfigEditor', () => {
  it.each([
    ['AMQP URL', 'amqpUrl', 'amqp://runlens@rabbit:5672/'],
    ['Exchange', 'exchange', 'reports'],
    ['Stream', 'stream', 'runlens.history2'],
    ['Replay', 'replay', '6h'],
    ['Live interval', 'liveInterval', '500ms'],
    ['Prometheus URL', 'prometheusUrl', 'http://prometheus:9090'],
    ['Impact query', 'impactQuery', 'sum(rate(errors_total[1m]))'],
    ['Impact window', 'impactWindow', '30m'],
    ['Alertmanager URL', 'alertmanagerUrl', 'http://alertmanager:9093'],
    ['Role dependencies', 'topology', 'web: [app]\napp: [db]'],
    ['Change gap', 'changeGap', '1h'],
    ['AMQP CA certificate', 'amqpTlsCaCert', CERT],
    ['AMQP client certificate', 'amqpTlsClientCert', CERT],
    ['AMQP server name', 'amqpTlsServerName', 'rabbit.internal'],
    ['Prometheus CA certificate', 'prometheusTlsCaCert', CERT],
    ['Prometheus client certificate', 'prometheusTlsClientCert', CERT],
    ['Alertmanager CA certificate', 'alertmanagerTlsCaCert', CERT],
    ['Alertmanager client certificate', 'alertmanagerTlsClientCert', CERT],
  ])('%s sets jsonData.%s', (label, key, value) => {
    const { onOptionsChange } = setup({ jsonData: { exchange: 'chef_reports' } });
    fireEvent.change(screen.getByLabelText(label), { target: { value } });
    expect(onOptionsChange).toHaveBeenCalledTimes(1);
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.jsonData).toEqual({ ...(key === 'exchange' ? {} : { exchange: 'chef_reports' }), [key]: value });
    expect(next.secureJsonData).toBeUndefined();
  });

  it.each([
    ['Group by role above', 'groupByRoleAbove', '500', 500],
    ['Highlight score', 'highlightScore', '0.25', 0.25],
    ['Highlight score', 'highlightScore', '', undefined],
  ])('%s sets jsonData.%s as a number', (label, key, typed, stored) => {
    const { onOptionsChange } = setup({ jsonData: { groupByRoleAbove: 300, highlightScore: 2 } });
    fireEvent.change(screen.getByLabelText(label), { target: { value: typed } });
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.jsonData[key as 'highlightScore']).toBe(stored);
  });

  it.each([
    ['AMQP skip TLS verify', 'amqpTlsSkipVerify'],
    ['Prometheus skip TLS verify', 'prometheusTlsSkipVerify'],
    ['Alertmanager skip TLS verify', 'alertmanagerTlsSkipVerify'],
  ])('%s toggles jsonData.%s', (label, key) => {
    const { onOptionsChange } = setup({ jsonData: { amqpUrl: 'amqps://u@h/' } });
    const toggle = screen.getByLabelText(label);
    expect(toggle).not.toBeChecked();
    fireEvent.click(toggle);
    expect(onOptionsChange.mock.calls[0][0].jsonData).toEqual({ amqpUrl: 'amqps://u@h/', [key]: true });
  });

  it.each([
    ['AMQP client key', 'amqpTlsClientKey'],
    ['Prometheus client key', 'prometheusTlsClientKey'],
    ['Alertmanager client key', 'alertmanagerTlsClientKey'],
  ])('%s goes to secureJsonData.%s, never jsonData', (label, key) => {
    const { onOptionsChange } = setup({ jsonData: { amqpUrl: 'amqps://u@h/' } });
    fireEvent.change(screen.getByLabelText(label), { target: { value: KEY } });
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.secureJsonData).toEqual({ [key]: KEY });
    expect(next.jsonData).toEqual({ amqpUrl: 'amqps://u@h/' });
  });

  it('shows a configured client key as configured and resets it the way Grafana does', () => {
    const { onOptionsChange } = setup({ secureJsonFields: { amqpTlsClientKey: true } });
    const key = screen.getByLabelText('AMQP client key');
    expect(key).toBeDisabled();
    expect(key).toHaveValue('configured');
    fireEvent.click(screen.getByRole('button', { name: 'Reset' }));
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.secureJsonFields).toEqual({ amqpTlsClientKey: false });
    expect(next.secureJsonData).toEqual({ amqpTlsClientKey: '' });
  });

  it('flags text that is not PEM', () => {
    setup({ jsonData: { amqpTlsCaCert: 'MIIB...' }, secureJsonData: { prometheusTlsClientKey: 'secret' } });
    expect(screen.getByText('PEM text starting with -----BEGIN CERTIFICATE-----')).toBeInTheDocument();
    expect(screen.getByText('PEM text starting with -----BEGIN PRIVATE KEY-----')).toBeInTheDocument();
  });

  it("offers Grafana's secure socks proxy switch only where Grafana enables the proxy", () => {
    const before = config.secureSocksDSProxyEnabled;
    try {
      config.secureSocksDSProxyEnabled = false;
      const first = setup();
      expect(screen.queryByText('Secure Socks Proxy')).not.toBeInTheDocument();
      first.unmount();

      config.secureSocksDSProxyEnabled = true;
      const { onOptionsChange } = setup({ jsonData: { amqpUrl: 'amqp://u@h/' } });
      const heading = screen.getByText('Secure Socks Proxy');
      const section = heading.parentElement as HTMLElement;
      fireEvent.click(within(section).getByRole('switch'));
      expect(onOptionsChange.mock.calls[0][0].jsonData).toEqual({ amqpUrl: 'amqp://u@h/', enableSecureSocksProxy: true });
    } finally {
      config.secureSocksDSProxyEnabled = before;
    }
  });

  it('sets the Prometheus and Alertmanager users separately', () => {
    const { onOptionsChange } = setup();
    const users = screen.getAllByLabelText('User');
    expect(users).toHaveLength(2);
    fireEvent.change(users[0], { target: { value: 'prom' } });
    fireEvent.change(users[1], { target: { value: 'am' } });
    expect(onOptionsChange.mock.calls[0][0].jsonData).toEqual({ prometheusUser: 'prom' });
    expect(onOptionsChange.mock.calls[1][0].jsonData).toEqual({ alertmanagerUser: 'am' });
  });

  it('shows the backend defaults as placeholders', () => {
    setup();
    expect(screen.getByLabelText('Exchange')).toHaveAttribute('placeholder', 'chef_reports');
    expect(screen.getByLabelText('Stream')).toHaveAttribute('placeholder', 'runlens.history');
    expect(screen.getByLabelText('Replay')).toHaveAttribute('placeholder', '24h');
    expect(screen.getByLabelText('Live interval')).toHaveAttribute('placeholder', '1s');
    expect(screen.getByLabelText('Impact window')).toHaveAttribute('placeholder', '15m');
    expect(screen.getByLabelText('Change gap')).toHaveAttribute('placeholder', '30m');
    expect(screen.getByLabelText('Group by role above')).toHaveAttribute('placeholder', '200');
    expect(screen.getByLabelText('Impact query').getAttribute('placeholder')).toContain('service="$role"');
  });

  it('puts passwords in secureJsonData, never in jsonData', () => {
    const { onOptionsChange } = setup({ jsonData: { amqpUrl: 'amqp://u@h/' } });
    fireEvent.change(screen.getByLabelText('AMQP password'), { target: { value: 's3cret' } });
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.secureJsonData).toEqual({ amqpPassword: 's3cret' });
    expect(next.jsonData).toEqual({ amqpUrl: 'amqp://u@h/' });

    const passwords = screen.getAllByLabelText('Password');
    expect(passwords).toHaveLength(2);
    fireEvent.change(passwords[0], { target: { value: 'p' } });
    fireEvent.change(passwords[1], { target: { value: 'a' } });
    expect(onOptionsChange.mock.calls[1][0].secureJsonData).toEqual({ prometheusPassword: 'p' });
    expect(onOptionsChange.mock.calls[2][0].secureJsonData).toEqual({ alertmanagerPassword: 'a' });
  });

  it('shows a configured secret as configured and resets it', () => {
    const { onOptionsChange } = setup({
      secureJsonFields: { amqpPassword: true, prometheusPassword: false },
    });
    const amqp = screen.getByLabelText('AMQP password');
    expect(amqp).toBeDisabled();
    expect(amqp).toHaveValue('configured');
    const resets = screen.getAllByRole('button', { name: 'Reset' });
    expect(resets).toHaveLength(1);
    fireEvent.click(resets[0]);
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.secureJsonFields).toEqual({ amqpPassword: false, prometheusPassword: false });
    expect(next.secureJsonData).toEqual({ amqpPassword: '' });
  });

  it('flags a password inside the AMQP URL', () => {
    setup({ jsonData: { amqpUrl: 'amqp://guest:guest@localhost:5672/' } });
    expect(screen.getByText(/Remove the password from the URL/)).toBeInTheDocument();
  });
});

describe('ConfigEditor validators', () => {
  it('accepts Go durations only', () => {
    for (const ok of ['', undefined, '1s', '500ms', '1h30m', '24h', '1.5h', '100us']) {
      expect(durationError(ok)).toBeUndefined();
    }
    for (const bad of ['1', '1d', 'soon', '-1s', '1 s']) {
      expect(durationError(bad)).toBeDefined();
    }
  });

  it('checks AMQP URLs', () => {
    expect(amqpUrlError('amqp://runlens@rabbit:5672/vhost')).toBeUndefined();
    expect(amqpUrlError('amqps://rabbit')).toBeUndefined();
    expect(amqpUrlError('amqp://u:p@rabbit')).toMatch(/password/);
    expect(amqpUrlError('http://rabbit')).toMatch(/amqp/);
  });

  it('checks numbers and PEM text', () => {
    expect(positiveIntegerError(undefined)).toBeUndefined();
    expect(positiveIntegerError(200)).toBeUndefined();
    for (const bad of [0, -1, 1.5, NaN]) {
      expect(positiveIntegerError(bad)).toBeDefined();
    }
    expect(scoreError(0)).toBeUndefined();
    expect(scoreError(2.5)).toBeUndefined();
    expect(scoreError(-0.5)).toBeDefined();
    expect(scoreError(NaN)).toBeDefined();
    expect(pemError(CERT, 'CERTIFICATE')).toBeUndefined();
    expect(pemError(KEY, 'PRIVATE KEY')).toBeUndefined();
    expect(pemError('-----BEGIN PRIVATE KEY-----', 'PRIVATE KEY')).toBeUndefined();
    expect(pemError(KEY, 'CERTIFICATE')).toBeDefined();
    expect(pemError('', 'CERTIFICATE')).toBeUndefined();
  });

  it('checks HTTP URLs', () => {
    expect(httpUrlError('http://prometheus:9090')).toBeUndefined();
    expect(httpUrlError('https://am.example/')).toBeUndefined();
    expect(httpUrlError('prometheus:9090')).toBeDefined();
  });
});
