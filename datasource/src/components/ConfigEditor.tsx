import React, { ChangeEvent } from 'react';
import {
  DataSourcePluginOptionsEditorProps,
  onUpdateDatasourceJsonDataOption,
  onUpdateDatasourceJsonDataOptionChecked,
  onUpdateDatasourceSecureJsonDataOption,
  updateDatasourcePluginJsonDataOption,
  updateDatasourcePluginResetOption,
  updateDatasourcePluginSecureJsonDataOption,
} from '@grafana/data';
import { config } from '@grafana/runtime';
import {
  FieldSet,
  InlineField,
  InlineSwitch,
  Input,
  SecretInput,
  SecretTextArea,
  SecureSocksProxySettings,
  TextArea,
} from '@grafana/ui';

import { DEFAULT_OPTIONS, RunlensOptions, RunlensSecureOptions } from '../types';

export type ConfigEditorProps = DataSourcePluginOptionsEditorProps<RunlensOptions, RunlensSecureOptions>;

type OwnOptions = Omit<RunlensOptions, keyof import('@grafana/data').DataSourceJsonData>;
/** Settings held as text. */
type TextKey = { [K in keyof OwnOptions]-?: NonNullable<OwnOptions[K]> extends string ? K : never }[keyof OwnOptions];
/** Settings held as numbers. */
type NumberKey = { [K in keyof OwnOptions]-?: NonNullable<OwnOptions[K]> extends number ? K : never }[keyof OwnOptions];
/** Settings held as booleans. */
type BoolKey = { [K in keyof OwnOptions]-?: NonNullable<OwnOptions[K]> extends boolean ? K : never }[keyof OwnOptions];
type SecretKey = keyof RunlensSecureOptions;

const LABEL_WIDTH = 24;
const INPUT_WIDTH = 48;

/** A Go duration as time.ParseDuration accepts it: 1s, 500ms, 1h30m, 24h. */
const GO_DURATION = /^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$/;

export function durationError(value: string | undefined): string | undefined {
  if (!value || GO_DURATION.test(value.trim())) {
    return undefined;
  }
  return 'A Go duration such as 1s, 500ms, 15m or 24h';
}

/** The AMQP URL must not carry the password: Grafana stores jsonData in clear text. */
export function amqpUrlError(value: string | undefined): string | undefined {
  if (!value) {
    return undefined;
  }
  if (!/^amqps?:\/\//i.test(value.trim())) {
    return 'An amqp:// or amqps:// URL';
  }
  if (/^amqps?:\/\/[^/@]*:[^/@]*@/i.test(value.trim())) {
    return 'Remove the password from the URL and put it in "AMQP password"';
  }
  return undefined;
}

/** A positive whole number (node counts). */
export function positiveIntegerError(value: number | undefined): string | undefined {
  if (value === undefined || (Number.isInteger(value) && value > 0)) {
    return undefined;
  }
  return 'A whole number above 0';
}

/** A score: a number of 0 or more (0 turns highlighting off). */
export function scoreError(value: number | undefined): string | undefined {
  if (value === undefined || (Number.isFinite(value) && value >= 0)) {
    return undefined;
  }
  return 'A number of 0 or more';
}

/** A PEM block of the given kind, e.g. CERTIFICATE or (any) PRIVATE KEY. */
export function pemError(value: string | undefined, kind: 'CERTIFICATE' | 'PRIVATE KEY'): string | undefined {
  if (!value || !value.trim()) {
    return undefined;
  }
  const re = kind === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  return re.test(value) ? undefined : `PEM text starting with -----BEGIN ${kind}-----`;
}

export function httpUrlError(value: string | undefined): string | undefined {
  if (!value || /^https?:\/\/[^\s]+$/i.test(value.trim())) {
    return undefined;
  }
  return 'An http:// or https:// URL';
}

export function ConfigEditor(props: ConfigEditorProps) {
  const { options } = props;
  const jsonData = options.jsonData ?? {};
  const secureJsonData = options.secureJsonData ?? {};
  const secureJsonFields = options.secureJsonFields ?? {};

  const text = (
    key: TextKey,
    label: string,
    tooltip: string,
    placeholder: string,
    validate?: (v: string | undefined) => string | undefined
  ) => {
    const value = jsonData[key] ?? '';
    const error = validate?.(value);
    const id = `runlens-${key}`;
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id} invalid={!!error} error={error}>
        <Input
          id={id}
          width={INPUT_WIDTH}
          value={value}
          placeholder={placeholder}
          onChange={onUpdateDatasourceJsonDataOption(props, key)}
        />
      </InlineField>
    );
  };

  /** A number setting: empty removes it (the backend then applies its default). */
  const number = (
    key: NumberKey,
    label: string,
    tooltip: string,
    placeholder: string,
    validate: (v: number | undefined) => string | undefined
  ) => {
    const value = jsonData[key];
    const error = validate(value);
    const id = `runlens-${key}`;
    const onChange = (event: ChangeEvent<HTMLInputElement>) => {
      const raw = event.currentTarget.value.trim();
      updateDatasourcePluginJsonDataOption(props, key, raw === '' ? undefined : Number(raw));
    };
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id} invalid={!!error} error={error}>
        <Input
          id={id}
          type="number"
          width={INPUT_WIDTH}
          value={value ?? ''}
          placeholder={placeholder}
          onChange={onChange}
        />
      </InlineField>
    );
  };

  const toggle = (key: BoolKey, label: string, tooltip: string) => {
    const id = `runlens-${key}`;
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id}>
        <InlineSwitch id={id} value={!!jsonData[key]} onChange={onUpdateDatasourceJsonDataOptionChecked(props, key)} />
      </InlineField>
    );
  };

  /** PEM text such as a CA or client certificate: public, so jsonData. */
  const pem = (key: TextKey, label: string, tooltip: string) => {
    const value = jsonData[key] ?? '';
    const error = pemError(value, 'CERTIFICATE');
    const id = `runlens-${key}`;
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id} invalid={!!error} error={error}>
        <TextArea
          id={id}
          cols={INPUT_WIDTH}
          rows={3}
          value={value}
          placeholder="-----BEGIN CERTIFICATE-----"
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) => updateDatasourcePluginJsonDataOption(props, key, e.currentTarget.value)}
          style={{ fontFamily: 'monospace' }}
        />
      </InlineField>
    );
  };

  // Secrets follow Grafana's convention: written to secureJsonData, shown only as "configured"
  // (secureJsonFields) once saved, and cleared with Reset (updateDatasourcePluginResetOption).
  const secret = (key: SecretKey, label: string, tooltip: string) => {
    const id = `runlens-${key}`;
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id}>
        <SecretInput
          id={id}
          width={INPUT_WIDTH}
          isConfigured={!!secureJsonFields[key]}
          value={secureJsonData[key] ?? ''}
          placeholder="password"
          onChange={onUpdateDatasourceSecureJsonDataOption(props, key)}
          onReset={() => updateDatasourcePluginResetOption(props, key)}
        />
      </InlineField>
    );
  };

  const secretPem = (key: SecretKey, label: string, tooltip: string) => {
    const id = `runlens-${key}`;
    const value = secureJsonData[key] ?? '';
    const error = pemError(value, 'PRIVATE KEY');
    return (
      <InlineField label={label} labelWidth={LABEL_WIDTH} tooltip={tooltip} htmlFor={id} invalid={!!error} error={error}>
        <SecretTextArea
          id={id}
          cols={INPUT_WIDTH}
          rows={3}
          isConfigured={!!secureJsonFields[key]}
          value={value}
          placeholder="-----BEGIN PRIVATE KEY-----"
          onChange={(e: ChangeEvent<HTMLTextAreaElement>) =>
            updateDatasourcePluginSecureJsonDataOption(props, key, e.currentTarget.value)
          }
          onReset={() => updateDatasourcePluginResetOption(props, key)}
        />
      </InlineField>
    );
  };

  return (
    <>
      <FieldSet label="RabbitMQ">
        {text(
          'amqpUrl',
          'AMQP URL',
          'Broker URL with user and vhost but without the password, e.g. amqp://runlens@rabbitmq:5672/ (amqps:// for TLS)',
          'amqp://guest@localhost:5672/',
          amqpUrlError
        )}
        {secret('amqpPassword', 'AMQP password', 'Password of the AMQP user; stored encrypted')}
        {text('exchange', 'Exchange', 'Fanout exchange the run reports are published to', DEFAULT_OPTIONS.exchange)}
        {text(
          'stream',
          'Stream',
          'RabbitMQ stream bound to the exchange; the datasource reads history from it',
          DEFAULT_OPTIONS.stream
        )}
        {text(
          'replay',
          'Replay',
          'How far back the datasource rebuilds the fleet state when it starts (Go duration)',
          DEFAULT_OPTIONS.replay,
          durationError
        )}
        {text(
          'liveInterval',
          'Live interval',
          'How often live topology frames are pushed to open panels (Go duration)',
          DEFAULT_OPTIONS.liveInterval,
          durationError
        )}
      </FieldSet>

      <FieldSet label="RabbitMQ TLS (amqps://)">
        {pem('amqpTlsCaCert', 'AMQP CA certificate', 'PEM CA certificate(s) the broker certificate must chain to; empty uses the system roots')}
        {pem('amqpTlsClientCert', 'AMQP client certificate', 'PEM client certificate for brokers that require mutual TLS')}
        {secretPem('amqpTlsClientKey', 'AMQP client key', 'PEM private key of the client certificate; stored encrypted')}
        {text(
          'amqpTlsServerName',
          'AMQP server name',
          'Name the broker certificate must carry, when it differs from the host in the AMQP URL',
          'host from the URL'
        )}
        {toggle('amqpTlsSkipVerify', 'AMQP skip TLS verify', 'Do not verify the broker certificate (testing only)')}
      </FieldSet>

      <FieldSet label="Prometheus (change impact)">
        {text(
          'prometheusUrl',
          'Prometheus URL',
          'Prometheus that holds the application (APM) metrics the impact query reads',
          'http://localhost:9090',
          httpUrlError
        )}
        {text('prometheusUser', 'User', 'Basic-auth user for Prometheus; leave empty for none', 'none')}
        {secret('prometheusPassword', 'Password', 'Basic-auth password for Prometheus; stored encrypted')}
        {pem('prometheusTlsCaCert', 'Prometheus CA certificate', 'PEM CA certificate(s) for an https:// Prometheus; empty uses the system roots')}
        {pem('prometheusTlsClientCert', 'Prometheus client certificate', 'PEM client certificate for mutual TLS')}
        {secretPem('prometheusTlsClientKey', 'Prometheus client key', 'PEM private key of the client certificate; stored encrypted')}
        {toggle('prometheusTlsSkipVerify', 'Prometheus skip TLS verify', 'Do not verify the Prometheus certificate (testing only)')}
        {text(
          'impactQuery',
          'Impact query',
          'PromQL template for the application error rate that changes are ranked by; $node, $role and $environment are replaced by the changed node\'s values. Empty uses the default shown.',
          DEFAULT_OPTIONS.impactQuery
        )}
        {text(
          'impactWindow',
          'Impact window',
          'How long after a change its effect on the error rate is measured (Go duration)',
          DEFAULT_OPTIONS.impactWindow,
          durationError
        )}
        {text(
          'changeGap',
          'Change gap',
          'Runs of one role and environment that changed the same resources form one change set while each starts within this gap of the previous one (Go duration)',
          DEFAULT_OPTIONS.changeGap,
          durationError
        )}
        {number(
          'highlightScore',
          'Highlight score',
          'Impact score from which a change set\'s nodes light up on the live topology, scored every minute without an impact query (needs the Prometheus URL); 0 turns it off',
          String(DEFAULT_OPTIONS.highlightScore),
          scoreError
        )}
      </FieldSet>

      <FieldSet label="Alertmanager">
        {text(
          'alertmanagerUrl',
          'Alertmanager URL',
          'Alertmanager the datasource reads active alerts from; leave empty for none',
          'http://localhost:9093',
          httpUrlError
        )}
        {text('alertmanagerUser', 'User', 'Basic-auth user for Alertmanager; leave empty for none', 'none')}
        {secret('alertmanagerPassword', 'Password', 'Basic-auth password for Alertmanager; stored encrypted')}
        {pem('alertmanagerTlsCaCert', 'Alertmanager CA certificate', 'PEM CA certificate(s) for an https:// Alertmanager; empty uses the system roots')}
        {pem('alertmanagerTlsClientCert', 'Alertmanager client certificate', 'PEM client certificate for mutual TLS')}
        {secretPem('alertmanagerTlsClientKey', 'Alertmanager client key', 'PEM private key of the client certificate; stored encrypted')}
        {toggle('alertmanagerTlsSkipVerify', 'Alertmanager skip TLS verify', 'Do not verify the Alertmanager certificate (testing only)')}
      </FieldSet>

      <FieldSet label="Topology">
        <InlineField
          label="Role dependencies"
          labelWidth={LABEL_WIDTH}
          tooltip="YAML map from a role to the roles it depends on; draws the edges between nodes"
          htmlFor="runlens-topology"
          grow
        >
          <TextArea
            id="runlens-topology"
            rows={8}
            value={jsonData.topology ?? ''}
            placeholder={'web: [app]\napp: [db, cache]'}
            onChange={(e: ChangeEvent<HTMLTextAreaElement>) =>
              updateDatasourcePluginJsonDataOption(props, 'topology', e.currentTarget.value)
            }
            style={{ fontFamily: 'monospace' }}
          />
        </InlineField>
        {number(
          'groupByRoleAbove',
          'Group by role above',
          'A by-node topology with more matching nodes than this shows one graph node per role instead, with a notice (the Node Graph panel draws 200 nodes by default)',
          String(DEFAULT_OPTIONS.groupByRoleAbove),
          positiveIntegerError
        )}
      </FieldSet>

      {/* Grafana's own component and key (enableSecureSocksProxy), shown only where Grafana has the proxy enabled. */}
      {config.secureSocksDSProxyEnabled && <SecureSocksProxySettings options={options} onOptionsChange={props.onOptionsChange} />}
    </>
  );
}
