import { CoreApp, DataSourceInstanceSettings, ScopedVars, StreamingFrameAction, toDataFrame } from '@grafana/data';
import {
  BackendSrv,
  GrafanaLiveSrv,
  LiveDataStreamOptions,
  setBackendSrv,
  setGrafanaLiveSrv,
  setTemplateSrv,
  TemplateSrv,
} from '@grafana/runtime';
import { firstValueFrom, NEVER, of } from 'rxjs';

import { DataSource, STREAM_MAX_ROWS } from './datasource';
import { plugin } from './module';
import { RunlensOptions, RunlensQuery } from './types';

/** A TemplateSrv that knows a few variables and applies the requested format like Grafana does. */
function fakeTemplateSrv(vars: Record<string, string | string[]>): TemplateSrv {
  const format = (value: string | string[], fmt?: string | Function): string => {
    const values = Array.isArray(value) ? value : [value];
    switch (fmt) {
      case 'csv':
        return values.join(',');
      case 'regex': {
        const escaped = values.map((v) => v.replace(/[\\^$*+?.()|[\]{}\/]/g, '\\$&'));
        return escaped.length > 1 ? `(${escaped.join('|')})` : escaped[0];
      }
      default:
        return values.length > 1 ? `{${values.join(',')}}` : values[0];
    }
  };
  return {
    getVariables: () => [],
    containsTemplate: (t?: string) => !!t && /\$\w+/.test(t),
    updateTimeRange: () => {},
    replace: vi.fn((target?: string, scopedVars?: ScopedVars, fmt?: string | Function) =>
      (target ?? '').replace(/\$(\w+)/g, (m, name: string) => {
        const scoped = scopedVars?.[name]?.value as string | string[] | undefined;
        const v = scoped ?? vars[name];
        return v === undefined ? m : format(v, fmt);
      })
    ),
  } as unknown as TemplateSrv;
}

function settings(): DataSourceInstanceSettings<RunlensOptions> {
  return {
    id: 1,
    uid: 'ds-uid',
    type: 'runlens-topology-datasource',
    name: 'runlens',
    access: 'proxy',
    readOnly: false,
    jsonData: {},
    meta: { id: 'runlens-topology-datasource' } as DataSourceInstanceSettings['meta'],
  } as DataSourceInstanceSettings<RunlensOptions>;
}

describe('DataSource', () => {
  beforeEach(() => {
    setTemplateSrv(fakeTemplateSrv({ env: 'prod', role: 'web', nodes: ['web-01.example', 'web-02.example'] }));
  });

  it('defaults to a topology query grouped by node', () => {
    const ds = new DataSource(settings());
    expect(ds.getDefaultQuery(CoreApp.PanelEditor)).toEqual({ queryType: 'topology', groupBy: 'node' });
  });

  it('interpolates environment, role and node', () => {
    const ds = new DataSource(settings());
    const q: RunlensQuery = {
      refId: 'A',
      queryType: 'topology',
      groupBy: 'role',
      layout: true,
      environment: '$env',
      role: '$role',
      node: '^$nodes$',
    };
    expect(ds.applyTemplateVariables(q, {})).toEqual({
      refId: 'A',
      queryType: 'topology',
      groupBy: 'role',
      layout: true,
      environment: 'prod',
      role: 'web',
      node: '^(web-01\\.example|web-02\\.example)$',
    });
  });

  it('prefers scoped variables (repeated panels) and joins multi-values with commas', () => {
    const ds = new DataSource(settings());
    const scoped: ScopedVars = { env: { text: 'staging', value: ['staging', 'qa'] } };
    const out = ds.applyTemplateVariables({ refId: 'A', queryType: 'runs', environment: '$env' }, scoped);
    expect(out.environment).toBe('staging,qa');
    expect(out.role).toBeUndefined();
    expect(out.node).toBeUndefined();
  });

  it('fills a missing query type with topology', () => {
    const ds = new DataSource(settings());
    expect(ds.applyTemplateVariables({ refId: 'A' }, {}).queryType).toBe('topology');
  });

  it('skips hidden queries', () => {
    const ds = new DataSource(settings());
    expect(ds.filterQuery({ refId: 'A', queryType: 'runs' })).toBe(true);
    expect(ds.filterQuery({ refId: 'A', queryType: 'runs', hide: true })).toBe(false);
  });

  it('replaces streamed frames instead of appending to them', () => {
    const ds = new DataSource(settings());
    const frame = toDataFrame({ fields: [{ name: 'id', values: ['a', 'b'] }] });
    const opts = ds.streamOptionsProvider({ targets: [], maxDataPoints: 300 } as never, frame);
    expect(opts.action).toBe(StreamingFrameAction.Replace);
    // a fleet larger than the panel's maxDataPoints must not lose nodes
    expect(opts.maxLength).toBe(STREAM_MAX_ROWS);
  });

  it('supports annotations with a changes query by default', () => {
    const ds = new DataSource(settings());
    expect(ds.annotations).toBeDefined();
    expect(ds.annotations!.getDefaultQuery!()).toEqual({ queryType: 'changes' });
    expect(ds.annotations!.prepareQuery!({ name: 'Changes', enable: true, iconColor: 'red' } as never)).toEqual({
      refId: 'Anno',
      queryType: 'changes',
    });
    expect(
      ds.annotations!.prepareQuery!({
        name: 'Changes',
        enable: true,
        iconColor: 'red',
        target: { refId: 'X', queryType: 'changes', environment: '$env' },
      })
    ).toEqual({ refId: 'X', queryType: 'changes', environment: '$env' });
  });
});

describe('DataSource.query with live topology frames', () => {
  it('subscribes to the nodes and edges channels and replaces their frames', async () => {
    setTemplateSrv(fakeTemplateSrv({ env: 'prod' }));
    const posted: unknown[] = [];
    setBackendSrv({
      fetch: (req: { url: string; data: unknown }) => {
        posted.push(req);
        const frame = (name: string, channel: string) => ({
          schema: {
            name,
            refId: 'A',
            meta: { preferredVisualisationType: 'nodeGraph', channel },
            fields: [{ name: 'id', type: 'string' }],
          },
          data: { values: [['a', 'b']] },
        });
        return of({
          data: {
            results: {
              A: {
                status: 200,
                frames: [
                  frame('nodes', 'ds/ds-uid/topology/nodes/env=prod'),
                  frame('edges', 'ds/ds-uid/topology/edges/env=prod'),
                ],
              },
            },
          },
          status: 200,
          ok: true,
        });
      },
    } as unknown as BackendSrv);
    const streams: LiveDataStreamOptions[] = [];
    setGrafanaLiveSrv({
      getDataStream: (opts: LiveDataStreamOptions) => {
        streams.push(opts);
        return streams.length === 1 ? of({ data: [], key: opts.addr.path }) : NEVER;
      },
    } as unknown as GrafanaLiveSrv);

    const ds = new DataSource(settings());
    const rsp = await firstValueFrom(
      ds.query({
        requestId: 'r1',
        targets: [{ refId: 'A', queryType: 'topology', groupBy: 'node', environment: '$env' }],
        range: { from: { valueOf: () => 0 }, to: { valueOf: () => 1000 }, raw: { from: 'now-1h', to: 'now' } },
        rangeRaw: { from: 'now-1h', to: 'now' },
        maxDataPoints: 100,
        scopedVars: {},
      } as never)
    );
    expect(rsp).toBeDefined();
    // the backend received the interpolated query
    expect((posted[0] as { data: { queries: RunlensQuery[] } }).data.queries[0]).toMatchObject({
      refId: 'A',
      queryType: 'topology',
      groupBy: 'node',
      environment: 'prod',
    });
    expect(streams.map((s) => `${s.addr.scope}/${s.addr.stream}/${s.addr.path}`)).toEqual([
      'ds/ds-uid/topology/nodes/env=prod',
      'ds/ds-uid/topology/edges/env=prod',
    ]);
    for (const s of streams) {
      expect(s.buffer?.action).toBe(StreamingFrameAction.Replace);
      expect(s.buffer?.maxLength).toBe(STREAM_MAX_ROWS);
    }
  });
});

describe('plugin module', () => {
  it('wires the datasource and both editors', () => {
    expect(plugin.DataSourceClass).toBe(DataSource);
    expect(plugin.components.ConfigEditor).toBeDefined();
    expect(plugin.components.QueryEditor).toBeDefined();
  });
});
