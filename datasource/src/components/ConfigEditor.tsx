import React, { ChangeEvent } from 'react';
import { DataSourcePluginOptionsEditorProps } from '@grafana/data';
import { FieldSet, InlineField, Input, SecretInput, TextArea } from '@grafana/ui';

import { DEFAULT_OPTIONS, RunlensOptions, RunlensSecureOptions } from '../types';

export type ConfigEditorProps = DataSourcePluginOptionsEditorProps<RunlensOptions, RunlensSecureOptions>;

type JsonKey = keyof Omit<RunlensOptions, keyof import('@grafana/data').DataSourceJsonData>;
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

export function httpUrlError(value: string | undefined): string | undefined {
  if (!value || /^https?:\/\/[^\s]+$/i.test(value.trim())) {
    return undefined;
  }
  return 'An http:// or https:// URL';
}

export function ConfigEditor(props: ConfigEditorProps) {
  const { options, onOptionsChange } = props;
  const jsonData = options.jsonData ?? {};
  const secureJsonData = options.secureJsonData ?? {};
  const secureJsonFields = options.secureJsonFields ?? {};

  const onJsonChange =
    (key: JsonKey) => (event: ChangeEvent<HTMLInputElement | HTMLTextAreaElement>) => {
      onOptionsChange({ ...options, jsonData: { ...jsonData, [key]: event.currentTarget.value } });
    };

  const onSecretChange = (key: SecretKey) => (event: ChangeEvent<HTMLInputElement>) => {
    onOptionsChange({ ...options, secureJsonData: { ...secureJsonData, [key]: event.currentTarget.value } });
  };

  const onSecretReset = (key: SecretKey) => () => {
    onOptionsChange({
      ...options,
      secureJsonFields: { ...secureJsonFields, [key]: false },
      secureJsonData: { ...secureJsonData, [key]: '' },
    });
  };

  const text = (
    key: JsonKey,
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
        <Input id={id} width={INPUT_WIDTH} value={value} placeholder={placeholder} onChange={onJsonChange(key)} />
      </InlineField>
    );
  };

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
          onChange={onSecretChange(key)}
          onReset={onSecretReset(key)}
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
          'Broker URL with user and vhost but without the password, e.g. amqp://runlens@rabbitmq:5672/',
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
            onChange={onJsonChange('topology')}
            style={{ fontFamily: 'monospace' }}
          />
        </InlineField>
      </FieldSet>
    </>
  );
}
