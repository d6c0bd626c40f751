import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';

import { RunlensOptions, RunlensSecureOptions } from '../types';
import { amqpUrlError, ConfigEditor, durationError, httpUrlError } from './ConfigEditor';

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
  render(<ConfigEditor options={options} onOptionsChange={onOptionsChange} />);
  return { onOptionsChange, options };
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
  ])('%s sets jsonData.%s', (label, key, value) => {
    const { onOptionsChange } = setup({ jsonData: { exchange: 'chef_reports' } });
    fireEvent.change(screen.getByLabelText(label), { target: { value } });
    expect(onOptionsChange).toHaveBeenCalledTimes(1);
    const next: Settings = onOptionsChange.mock.calls[0][0];
    expect(next.jsonData).toEqual({ ...(key === 'exchange' ? {} : { exchange: 'chef_reports' }), [key]: value });
    expect(next.secureJsonData).toBeUndefined();
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

  it('checks HTTP URLs', () => {
    expect(httpUrlError('http://prometheus:9090')).toBeUndefined();
    expect(httpUrlError('https://am.example/')).toBeUndefined();
    expect(httpUrlError('prometheus:9090')).toBeDefined();
  });
});
