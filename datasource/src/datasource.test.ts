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

import { legacyTemplateSrv } from '../test/templateSrv';
import { DataSource, STREAM_MAX_ROWS } from './datasource';
import { plugin } from './module';
import { RunlensOptions, RunlensQuery } from './types';

/** A legacy TemplateSrv (test/templateSrv.ts) with textbox variables of the given values. */
function textboxes(vars: Record<string, string>): TemplateSrv {
  return legacyTemplateSrv(
    Object.entries(vars).map(([name, value]) => ({ name, type: 'textbox', current: { value }, options: [] }))
  );
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
    setTemplateSrv(textboxes({ env: 'prod', role: 'web', pattern: 'web-0[12]' }));
  });

  it('defaults to a topology query grouped by node', () => {
    const ds = new DataSource(settings());
    expect(ds.getDefaultQuery(CoreApp.PanelEditor)).toEqual({ queryType: 'topology', groupBy: 'node' });
  });

  it('interpolates environment, role and node, keeping the other fields', () => {
    // the variable cases (All, multi, single, repeats) are in interpolate.test.ts
    const ds = new DataSource(settings());
    const q: RunlensQuery = {
      refId: 'A',
      queryType: 'topology',
      groupBy: 'role',
      layout: 'pinned',
      environment: '$env',
      role: '$role',
      node: '$pattern',
    };
    expect(ds.applyTemplateVariables(q, {})).toEqual({ ...q, environment: 'prod', role: 'web', node: 'web-0[12]' });
  });

  it('prefers scoped variables (repeated panels)', () => {
    const ds = new DataSource(settings());
    const scoped: ScopedVars = { env: { text: 'staging', value: 'staging' } };
    const out = ds.applyTemplateVariables({ refId: 'A', queryType: 'runs', environment: '$env' }, scoped);
    expect(out.environment).toBe('staging');
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
    setTemplateSrv(textboxes({ env: 'prod' }));
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
