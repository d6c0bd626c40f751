import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** What a query asks the backend for. */
export type QueryType = 'topology' | 'runs' | 'changes' | 'impact';

/** How the topology groups its graph nodes. */
export type GroupBy = 'node' | 'role';

/** How changes and impact group runs: one row/annotation per change set (default) or per run. */
export type ChangeGroupBy = 'set' | 'run';

/**
 * Topology layout: `pinned` (default) puts fixedX/fixedY on every node in a deterministic layered
 * layout, so a live view never moves; `auto` leaves positions to the Node Graph panel's own layout.
 */
export type Layout = 'pinned' | 'auto';

/** The query JSON the Go backend decodes (see the "Datasource contract" in the brief). */
export interface RunlensQuery extends DataQuery {
  queryType?: QueryType;
  /** An environment name, or several comma-separated; empty means every environment. */
  environment?: string;
  /** A role name, or several comma-separated; empty means every role. */
  role?: string;
  /** An RE2 regular expression the backend anchors as ^(?:node)$; empty means every node. */
  node?: string;
  /**
   * topology: one graph node per fleet node (default) or per role;
   * changes / impact: one per change set (default) or per run.
   */
  groupBy?: GroupBy | ChangeGroupBy;
  /** topology only: `pinned` (default) or `auto`. Legacy dashboards hold a boolean (true = pinned). */
  layout?: Layout | boolean;
}

export const QUERY_TYPES: ReadonlyArray<{ value: QueryType; label: string; description: string }> = [
  { value: 'topology', label: 'Topology', description: 'Live node graph of the fleet (Node Graph panel)' },
  { value: 'runs', label: 'Runs', description: 'Table of runs in the time range' },
  { value: 'changes', label: 'Changes', description: 'Runs that changed something, as annotations' },
  { value: 'impact', label: 'Impact', description: 'Changes ranked by the APM error-rate change after them' },
];

export const GROUP_BY_OPTIONS: ReadonlyArray<{ value: GroupBy; label: string }> = [
  { value: 'node', label: 'Node' },
  { value: 'role', label: 'Role' },
];

export const CHANGE_GROUP_BY_OPTIONS: ReadonlyArray<{ value: ChangeGroupBy; label: string; description: string }> = [
  { value: 'set', label: 'Change set', description: 'One per roll-out: runs that changed the same resources on one role' },
  { value: 'run', label: 'Run', description: 'One per run' },
];

export const LAYOUT_OPTIONS: ReadonlyArray<{ value: Layout; label: string; description: string }> = [
  { value: 'pinned', label: 'Pinned', description: 'Fixed positions: roles in layers by dependency, environments apart; live views never move' },
  { value: 'auto', label: 'Auto', description: "The Node Graph panel's own layout (for static views)" },
];

/** The layout a stored query means: legacy `true` is pinned, `false` or nothing the default (pinned). */
export function queryLayout(layout: RunlensQuery['layout']): Layout {
  return layout === 'auto' ? 'auto' : 'pinned';
}

export const DEFAULT_QUERY: Partial<RunlensQuery> = {
  queryType: 'topology',
  groupBy: 'node',
};

/** The annotation query a new annotation starts with. */
export const DEFAULT_ANNOTATION_QUERY: Partial<RunlensQuery> = {
  queryType: 'changes',
};

/** Settings (jsonData) of a runlens datasource. */
export interface RunlensOptions extends DataSourceJsonData {
  /** amqp://user@host:5672/vhost — without the password (that goes to secureJsonData.amqpPassword). */
  amqpUrl?: string;
  exchange?: string;
  stream?: string;
  /** How far back to rebuild state on start (Go duration). */
  replay?: string;
  /** How often live frames are pushed (Go duration). */
  liveInterval?: string;
  prometheusUrl?: string;
  prometheusUser?: string;
  /** PromQL template for the APM error rate used by the impact query. */
  impactQuery?: string;
  /** How long after a change its impact is measured (Go duration). */
  impactWindow?: string;
  alertmanagerUrl?: string;
  alertmanagerUser?: string;
  /** YAML: role → roles it depends on. */
  topology?: string;

  /** TLS for amqps:// (the client key is secureJsonData.amqpTlsClientKey). PEM text. */
  amqpTlsCaCert?: string;
  amqpTlsClientCert?: string;
  amqpTlsServerName?: string;
  amqpTlsSkipVerify?: boolean;
  prometheusTlsCaCert?: string;
  prometheusTlsClientCert?: string;
  prometheusTlsSkipVerify?: boolean;
  alertmanagerTlsCaCert?: string;
  alertmanagerTlsClientCert?: string;
  alertmanagerTlsSkipVerify?: boolean;
  /** Grafana's standard key: route the plugin's connections through Grafana's secure socks proxy. */
  enableSecureSocksProxy?: boolean;
  /** A by-node topology with more matching nodes switches to the by-role view (default 200). */
  groupByRoleAbove?: number;
  /** Impact score from which a change set's nodes light up on the live topology (default 8; 0: off). */
  highlightScore?: number;
  /** The gap that splits change sets (Go duration, default 30m). */
  changeGap?: string;
}

/** Settings (secureJsonData) that Grafana stores encrypted and never sends back. */
export interface RunlensSecureOptions {
  amqpPassword?: string;
  prometheusPassword?: string;
  alertmanagerPassword?: string;
  /** PEM private keys of the client certificates. */
  amqpTlsClientKey?: string;
  prometheusTlsClientKey?: string;
  alertmanagerTlsClientKey?: string;
}

/** The defaults the backend applies when a setting is empty; shown as placeholders. */
export const DEFAULT_OPTIONS = {
  exchange: 'chef_reports',
  stream: 'runlens.history',
  replay: '24h',
  liveInterval: '1s',
  impactWindow: '15m',
  changeGap: '30m',
  groupByRoleAbove: 200,
  highlightScore: 8,
  impactQuery:
    'sum(rate(http_requests_total{code=~"5..",service="$role",environment="$environment"}[5m]))' +
    ' / sum(rate(http_requests_total{service="$role",environment="$environment"}[5m]))',
} as const satisfies Partial<RunlensOptions>;
