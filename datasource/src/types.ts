import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** What a query asks the backend for. */
export type QueryType = 'topology' | 'runs' | 'changes' | 'impact';

/** How the topology groups its graph nodes. */
export type GroupBy = 'node' | 'role';

/** The query JSON the Go backend decodes (see the "Datasource contract" in the brief). */
export interface RunlensQuery extends DataQuery {
  queryType?: QueryType;
  /** Exact environment name; empty means every environment. */
  environment?: string;
  /** Exact role name; empty means every role. */
  role?: string;
  /** A regular expression on the node name; empty means every node. */
  node?: string;
  /** topology only: one graph node per fleet node (default) or per role. */
  groupBy?: GroupBy;
  /** topology only: pin positions with the deterministic layout (environment columns, role rows). */
  layout?: boolean;
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
}

/** Settings (secureJsonData) that Grafana stores encrypted and never sends back. */
export interface RunlensSecureOptions {
  amqpPassword?: string;
  prometheusPassword?: string;
  alertmanagerPassword?: string;
}

/** The defaults the backend applies when a setting is empty; shown as placeholders. */
export const DEFAULT_OPTIONS = {
  exchange: 'chef_reports',
  stream: 'runlens.history',
  replay: '24h',
  liveInterval: '1s',
  impactWindow: '15m',
  impactQuery:
    'sum(rate(http_requests_total{code=~"5..",service="$role",environment="$environment"}[5m]))' +
    ' / sum(rate(http_requests_total{service="$role",environment="$environment"}[5m]))',
} as const satisfies Partial<RunlensOptions>;
