// The live topology as the Node Graph panel holds it, fed with packets the backend really sent:
// datasource/testdata/live-packets.json, captured over Grafana's plugin protocol by the Go test
// TestCaptureLivePackets (datasource/live_grpc_test.go; the fleet grows past groupByRoleAbove into
// the by-role view and shrinks back). Each channel's packets go through @grafana/data's own
// StreamingDataFrame as Grafana's LiveDataStream does with the Replace action (test/liveStream.ts),
// with this datasource's own stream options, and after every packet, in every plausible
// interleaving of the two channels, the panel must be able to draw what it holds:
//
// - no edge whose source or target is missing from the latest nodes frame (the Node Graph panel
//   refuses the graph: public/app/plugins/panel/nodeGraph/dataErrors.ts);
// - fixedX and fixedY on every node (the query asks for the pinned layout);
// - a node in two consecutive nodes frames keeps its position;
// - the query's RefID on every frame; the notices (meta) of the latest schema packet.
//
// The panel finds edges frames by their `source` field and reads field names lowercased
// (public/app/plugins/panel/nodeGraph/utils.ts: applyOptionsToFrames, getNodeFields).
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  DataFrame,
  DataFrameJSON,
  dataFrameToJSON,
  DataSourceInstanceSettings,
  FieldType,
  QueryResultMeta,
} from '@grafana/data';
import { toDataQueryResponse } from '@grafana/runtime';

import { DataSource } from '../src/datasource';
import { RunlensOptions } from '../src/types';
import { root } from './build';
import { LiveChannel } from './liveStream';

export const CAPTURE_PATH = resolve(root, 'testdata/live-packets.json');

interface CapturedPacket {
  seq: number;
  path: string;
  kind: 'nodes' | 'edges';
  data: DataFrameJSON;
  /** The generation the backend built the packet in, where the capture records it. */
  gen?: number;
}

interface Capture {
  scenario: string;
  query: DataFrameJSON[];
  subscribe?: Record<string, DataFrameJSON | null>;
  packets: CapturedPacket[];
}

/** What one channel's frame held after a step, copied out (the frame is updated in place). */
interface NodesView {
  ids: string[];
  pos: Map<string, [unknown, unknown]>;
  refId?: string;
  meta?: QueryResultMeta;
  /** The meta of the latest schema this channel sent. */
  sentMeta?: QueryResultMeta;
  rows: number;
  byRole: boolean;
}
interface EdgesView {
  ends: Array<[string, string]>;
  refId?: string;
  meta?: QueryResultMeta;
  sentMeta?: QueryResultMeta;
  rows: number;
}

/** One step of a channel: its frame after the query frame, the initial data, or a packet. */
interface Step<V> {
  view: V;
  /** Index into capture.packets, -1 before the first packet. */
  packet: number;
  /** The generation this frame belongs to (see generations(); the arrival index without them). */
  gen: number;
}

function field(frame: DataFrame, name: string) {
  return frame.fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
}

function nodesView(frame: DataFrame, sentMeta: QueryResultMeta | undefined): NodesView {
  const ids = [...(field(frame, 'id')?.values ?? [])].map(String);
  const xs = field(frame, 'fixedX')?.values ?? [];
  const ys = field(frame, 'fixedY')?.values ?? [];
  const pos = new Map<string, [unknown, unknown]>();
  ids.forEach((id, i) => pos.set(id, [xs[i], ys[i]]));
  const byRole = !!field(frame, 'detail__nodes');
  return { ids, pos, refId: frame.refId, meta: structuredClone(frame.meta), sentMeta, rows: frame.length, byRole };
}

function edgesView(frame: DataFrame, sentMeta: QueryResultMeta | undefined): EdgesView {
  const src = [...(field(frame, 'source')?.values ?? [])].map(String);
  const dst = [...(field(frame, 'target')?.values ?? [])].map(String);
  return {
    ends: src.map((s, i) => [s, dst[i]]),
    refId: frame.refId,
    meta: structuredClone(frame.meta),
    sentMeta,
    rows: frame.length,
  };
}

/**
 * The generation the backend built each packet in, where the capture records it (`gen`). Without
 * it the capture's arrival order is the only interleaving that can be checked soundly: which
 * packets of the two channels belong to one generation cannot be read from the order alone (two
 * adjacent packets may be one generation's pair or the ends of two), and a reorder across
 * generations goes beyond what the backend promises (frames at most one generation apart fit,
 * datasource/plugin/live.go).
 */
function generations(packets: CapturedPacket[]): number[] | undefined {
  return packets.every((p) => typeof p.gen === 'number') ? packets.map((p) => p.gen!) : undefined;
}

function settings(): DataSourceInstanceSettings<RunlensOptions> {
  return {
    id: 1,
    uid: 'runlens',
    type: 'runlens-topology-datasource',
    name: 'runlens',
    access: 'proxy',
    readOnly: false,
    jsonData: {},
    meta: { id: 'runlens-topology-datasource' } as DataSourceInstanceSettings['meta'],
  } as DataSourceInstanceSettings<RunlensOptions>;
}

function load(): Capture {
  const capture = JSON.parse(readFileSync(CAPTURE_PATH, 'utf8')) as Capture;
  expect(capture.packets.length).toBeGreaterThan(0);
  return capture;
}

/** Runs every channel of the capture through Grafana's streaming path; the steps of each. */
function replay(capture: Capture) {
  // The query response as DataSourceWithBackend reads it (toDataQueryResponse), then the streams
  // toStreamingDataResponse opens: one per frame with a channel, with our streamOptionsProvider.
  const rsp = toDataQueryResponse({ data: { results: { A: { status: 200, frames: capture.query } } } } as never);
  const ds = new DataSource(settings());
  const request = { targets: [{ refId: 'A', queryType: 'topology' }], maxDataPoints: 300 } as never;
  const byKind: Record<string, { channel: string; live: LiveChannel; frame: DataFrame }> = {};
  for (const frame of rsp.data as DataFrame[]) {
    const channel = frame.meta?.channel;
    if (!channel) {
      continue;
    }
    const kind = field(frame, 'source') ? 'edges' : 'nodes';
    expect(byKind[kind], `two ${kind} frames in the query response`).toBeUndefined();
    byKind[kind] = { channel, live: new LiveChannel(ds.streamOptionsProvider(request, frame), dataFrameToJSON(frame)), frame };
  }
  expect(Object.keys(byKind).sort()).toEqual(['edges', 'nodes']);

  const gens = generations(capture.packets);
  const sentMeta: Record<string, QueryResultMeta | undefined> = {
    nodes: byKind.nodes.frame.meta,
    edges: byKind.edges.frame.meta,
  };
  const nodes: Array<Step<NodesView>> = [];
  const edges: Array<Step<EdgesView>> = [];
  const record = (kind: string, packet: number, gen: number) => {
    const frame = byKind[kind].live.frame!;
    if (kind === 'nodes') {
      nodes.push({ view: nodesView(frame, sentMeta.nodes), packet, gen });
    } else {
      edges.push({ view: edgesView(frame, sentMeta.edges), packet, gen });
    }
  };
  for (const kind of ['nodes', 'edges']) {
    record(kind, -1, -1);
    // a SubscribeStream's initial data reaches the stream as its first message
    const initial = Object.entries(capture.subscribe ?? {}).find(([path]) => byKind[kind].channel.endsWith(`/${path}`));
    if (initial?.[1]) {
      if (initial[1].schema?.meta) {
        sentMeta[kind] = initial[1].schema.meta;
      }
      byKind[kind].live.push(structuredClone(initial[1]));
      record(kind, -1, -1);
    }
  }
  capture.packets.forEach((p, i) => {
    const target = byKind[p.kind];
    expect(target.channel.endsWith(`/${p.path}`) || target.channel === p.path, `packet ${p.seq} on ${p.path}`).toBe(true);
    // a schema without meta leaves the frame's meta as it was (StreamingDataFrame.push)
    if (p.data.schema?.meta) {
      sentMeta[p.kind] = p.data.schema.meta;
    }
    // a fresh copy, as each WebSocket message is: the worker's Append buffer grows the arrays it
    // was handed (StreamingDataFrame.push), which would alter the capture under the test
    target.live.push(structuredClone(p.data));
    record(p.kind, i, gens ? gens[i] : i);
  });
  return { nodes, edges, packets: capture.packets, withGenerations: !!gens };
}

/** The generations a step's frame is the latest one for: from its own to the next step's. */
function tenure<V>(steps: Array<Step<V>>, i: number): [number, number] {
  const next = steps[i + 1];
  return [steps[i].gen, next ? Math.max(steps[i].gen, next.gen - 1) : Infinity];
}

/**
 * Every pair (nodes step, edges step) the panel can hold at once: the pairs the capture's own
 * arrival order produced and, where the capture records generations, every pair whose frames are
 * at most one generation apart (either channel delivered up to a generation late: Grafana orders
 * nothing across channels, and the backend promises that frames up to a generation apart fit).
 */
function plausiblePairs(
  nodes: Array<Step<NodesView>>,
  edges: Array<Step<EdgesView>>,
  withGenerations: boolean
): Array<[number, number]> {
  const pairs = new Set<string>();
  // arrival order: after each packet, the latest step of each channel
  let n = nodes.map((s) => s.packet).lastIndexOf(-1);
  let e = edges.map((s) => s.packet).lastIndexOf(-1);
  pairs.add(`${n},${e}`);
  const maxPacket = Math.max(...nodes.map((s) => s.packet), ...edges.map((s) => s.packet));
  for (let p = 0; p <= maxPacket; p++) {
    const ni = nodes.findIndex((s) => s.packet === p);
    const ei = edges.findIndex((s) => s.packet === p);
    n = ni >= 0 ? ni : n;
    e = ei >= 0 ? ei : e;
    pairs.add(`${n},${e}`);
  }
  if (!withGenerations) {
    return [...pairs].map((k) => k.split(',').map(Number) as [number, number]);
  }
  // one generation of skew either way
  for (let i = 0; i < nodes.length; i++) {
    const [n0, n1] = tenure(nodes, i);
    for (let j = 0; j < edges.length; j++) {
      const [e0, e1] = tenure(edges, j);
      if (n0 - 1 <= e1 && e0 - 1 <= n1) {
        pairs.add(`${i},${j}`);
      }
    }
  }
  return [...pairs].map((k) => k.split(',').map(Number) as [number, number]);
}

/** The plausible states in which the panel holds an edge whose end is not among its nodes. */
function brokenStates(
  nodes: Array<Step<NodesView>>,
  edges: Array<Step<EdgesView>>,
  packets: CapturedPacket[],
  withGenerations: boolean
): { pairs: number; broken: string[] } {
  const pairs = plausiblePairs(nodes, edges, withGenerations);
  const broken: string[] = [];
  const at = (s: Step<unknown>) => `${packets[s.packet]?.seq ?? '(initial)'} (gen ${s.gen})`;
  for (const [i, j] of pairs) {
    const ids = new Set(nodes[i].view.ids);
    const missing = edges[j].view.ends.filter(([s, t]) => !ids.has(s) || !ids.has(t));
    if (missing.length) {
      const shown = missing.slice(0, 3).map(([s, t]) => `${s}→${t}`);
      broken.push(`nodes after packet ${at(nodes[i])} with edges after packet ${at(edges[j])}: ${shown.join(', ')}`);
    }
  }
  return { pairs: pairs.length, broken };
}

describe('live topology packets through StreamingDataFrame (Replace)', () => {
  const capture = load();
  const { nodes, edges, packets, withGenerations } = replay(capture);

  it('the capture exercises growth, shrinking and both views', () => {
    const sizes = nodes.map((s) => s.view.rows);
    expect(Math.max(...sizes)).toBeGreaterThan(Math.min(...sizes));
    // the by-role view's graph nodes are roles (detail__nodes lists each role's nodes)
    const byRole = nodes.map((s) => s.view.byRole);
    expect(byRole).toContain(true);
    expect(byRole.lastIndexOf(false)).toBeGreaterThan(byRole.indexOf(true));
    expect(edges.some((s) => s.view.rows > 0)).toBe(true);
    expect(packets.filter((p) => p.kind === 'nodes').length).toBeGreaterThan(3);
    expect(packets.filter((p) => p.kind === 'edges').length).toBeGreaterThan(3);
  });

  it('replaces each frame with the latest packet, never appending to it', () => {
    nodes.forEach((s) => {
      const p = s.packet >= 0 ? packets[s.packet] : undefined;
      if (p) {
        expect(s.view.rows, `nodes after packet ${p.seq}`).toBe((p.data.data?.values?.[0] ?? []).length);
      }
    });
    edges.forEach((s) => {
      const p = s.packet >= 0 ? packets[s.packet] : undefined;
      if (p) {
        expect(s.view.rows, `edges after packet ${p.seq}`).toBe((p.data.data?.values?.[0] ?? []).length);
      }
    });
  });

  it('pins every node of every nodes frame (fixedX and fixedY)', () => {
    for (const s of nodes) {
      const unpinned = s.view.ids.filter((id) => {
        const [x, y] = s.view.pos.get(id)!;
        return typeof x !== 'number' || typeof y !== 'number' || !Number.isFinite(x) || !Number.isFinite(y);
      });
      expect(unpinned, `nodes frame after packet ${packets[s.packet]?.seq ?? '(query)'}`).toEqual([]);
    }
  });

  it('keeps the position of every node that stays from one nodes frame to the next', () => {
    for (let i = 1; i < nodes.length; i++) {
      const before = nodes[i - 1].view;
      const after = nodes[i].view;
      const moved = after.ids.filter((id) => {
        const a = before.pos.get(id);
        const b = after.pos.get(id)!;
        return a !== undefined && (a[0] !== b[0] || a[1] !== b[1]);
      });
      expect(moved, `nodes frame after packet ${packets[nodes[i].packet]?.seq ?? '(initial)'}`).toEqual([]);
    }
  });

  it('never holds an edge to a node missing from the nodes frame, in any plausible interleaving', () => {
    if (!withGenerations) {
      console.warn(`${CAPTURE_PATH} records no generation per packet (gen): only its arrival order is checked`);
    }
    const { pairs, broken } = brokenStates(nodes, edges, packets, withGenerations);
    // at least one state per packet (the arrival order)
    expect(pairs).toBeGreaterThanOrEqual(packets.length);
    expect(broken).toEqual([]);
  });

  it("keeps the query's RefID and the latest schema's meta (notices) on every frame", () => {
    for (const s of [...nodes, ...edges]) {
      expect(s.view.refId).toBe('A');
      expect(s.view.meta?.notices ?? []).toEqual(s.view.sentMeta?.notices ?? []);
      expect(s.view.meta?.preferredVisualisationType).toBe('nodeGraph');
    }
  });

  it('updates the notices the panel shows as the state changes', () => {
    const shown = new Set(nodes.map((s) => JSON.stringify(s.view.meta?.notices ?? [])));
    expect(shown.size).toBeGreaterThan(1);
    // the by-role view says why; the by-node view after it no longer does
    for (const s of nodes) {
      const texts = (s.view.meta?.notices ?? []).map((n) => n.text).join(' ');
      expect(/grouped by role/.test(texts), `notices ${texts || '(none)'} with byRole=${s.view.byRole}`).toBe(s.view.byRole);
    }
  });
});

// The checker itself, on small made-up captures with generations: it must find an edge that
// arrives one generation before the nodes frame that names its end (the panel holds the older
// nodes frame meanwhile), and accept the backend's rule of an edge waiting one generation.
describe('the interleaving check', () => {
  const channel = (kind: string) => `ds/runlens/topology/t/${kind}`;
  const nodesJSON = (ids: string[]): DataFrameJSON => ({
    schema: {
      name: 'nodes',
      refId: 'A',
      meta: { preferredVisualisationType: 'nodeGraph', channel: channel('nodes') },
      fields: [
        { name: 'id', type: FieldType.string },
        { name: 'fixedX', type: FieldType.number },
        { name: 'fixedY', type: FieldType.number },
      ],
    },
    data: { values: [ids, ids.map((_, i) => i * 100), ids.map(() => 0)] },
  });
  const edgesJSON = (ends: Array<[string, string]>): DataFrameJSON => ({
    schema: {
      name: 'edges',
      refId: 'A',
      meta: { preferredVisualisationType: 'nodeGraph', channel: channel('edges') },
      fields: [
        { name: 'id', type: FieldType.string },
        { name: 'source', type: FieldType.string },
        { name: 'target', type: FieldType.string },
      ],
    },
    data: { values: [ends.map(([a, b]) => `${a}->${b}`), ends.map(([a]) => a), ends.map(([, b]) => b)] },
  });
  const capture = (packets: Array<[number, 'nodes' | 'edges', DataFrameJSON]>): Capture => ({
    scenario: 'made up',
    query: [nodesJSON(['a']), edgesJSON([])],
    packets: packets.map(([gen, kind, data], seq) => ({ seq, gen, kind, path: `topology/t/${kind}`, data })),
  });

  it('finds an edge sent in the same generation as its new node', () => {
    const c = capture([
      [1, 'nodes', nodesJSON(['a', 'b'])],
      [1, 'edges', edgesJSON([['a', 'b']])],
    ]);
    const { nodes, edges, packets, withGenerations } = replay(c);
    expect(withGenerations).toBe(true);
    // edges first within the generation: the panel still holds the query's nodes (a only)
    expect(brokenStates(nodes, edges, packets, true).broken).toHaveLength(1);
    // the arrival order alone (nodes first) never shows it
    expect(brokenStates(nodes, edges, packets, false).broken).toEqual([]);
  });

  it('accepts an edge that waits until its ends were in the previous nodes frame', () => {
    const c = capture([
      [1, 'nodes', nodesJSON(['a', 'b'])],
      [2, 'edges', edgesJSON([['a', 'b']])],
      [3, 'nodes', nodesJSON(['a', 'b', 'c'])],
    ]);
    const { nodes, edges, packets } = replay(c);
    expect(brokenStates(nodes, edges, packets, true).broken).toEqual([]);
  });
});
