import { DataSourceInstanceSettings, ScopedVars } from '@grafana/data';
import { setTemplateSrv, TemplateSrv } from '@grafana/runtime';
import {
  CustomVariable,
  EmbeddedScene,
  LocalValueVariable,
  SceneFlexItem,
  SceneFlexLayout,
  SceneObject,
  SceneVariableSet,
  TextBoxVariable,
} from '@grafana/scenes';

import { legacyTemplateSrv, LegacyVariable, sceneTemplateSrv } from '../test/templateSrv';
import { DataSource } from './datasource';
import { interpolateFilters, normaliseNames, normaliseNode } from './interpolate';
import { RunlensOptions, RunlensQuery } from './types';

// The variables of the runlens-topology dashboard, in the shapes users build them:
//   nodes    multi-select with All, no custom all value (All expands to every option)
//   nodesAny multi-select with a Prometheus-style custom all value `.*`
//   pattern  a textbox holding a regex
//   env      multi-select with All
//   envAny   multi-select with custom all value `*`
const NODE_OPTIONS = ['web-1', 'web.2', 'db-1'];
const ENV_OPTIONS = ['prod', 'staging'];

type Selection = { nodes: string[]; nodesAny: string[]; pattern: string; env: string[]; envAny: string[] };

const ALL = ['$__all'];

/** A Scenes dashboard (the real @grafana/scenes objects Grafana 11.3+ dashboards are made of). */
function sceneDashboard(sel: Selection): { dashboard: EmbeddedScene; panel: SceneObject; repeatedPanel: SceneObject } {
  const custom = (name: string, options: string[], value: string[], allValue?: string) =>
    new CustomVariable({
      name,
      query: options.join(','),
      isMulti: true,
      includeAll: true,
      allValue,
      value,
      text: value,
    });
  const panel = new SceneFlexLayout({ children: [] });
  // A repeated panel's clone carries its one value in a local variable set (Scenes' repeats).
  const repeatedPanel = new SceneFlexLayout({
    children: [],
    $variables: new SceneVariableSet({
      variables: [new LocalValueVariable({ name: 'nodes', value: 'web.2', text: 'web.2' })],
    }),
  });
  const dashboard = new EmbeddedScene({
    $variables: new SceneVariableSet({
      variables: [
        custom('nodes', NODE_OPTIONS, sel.nodes),
        custom('nodesAny', NODE_OPTIONS, sel.nodesAny, '.*'),
        new TextBoxVariable({ name: 'pattern', value: sel.pattern }),
        custom('env', ENV_OPTIONS, sel.env),
        custom('envAny', ENV_OPTIONS, sel.envAny, '*'),
      ],
    }),
    body: new SceneFlexLayout({ children: [new SceneFlexItem({ body: panel }), new SceneFlexItem({ body: repeatedPanel })] }),
  });
  dashboard.activate();
  // options come from the custom query once the variable set has validated
  for (const v of dashboard.state.$variables!.state.variables) {
    if (v instanceof CustomVariable) {
      expect(v.state.options.length).toBeGreaterThan(0);
    }
  }
  return { dashboard, panel, repeatedPanel };
}

/** The same dashboard as legacy (pre-Scenes) variable models. */
function legacyVariables(sel: Selection): LegacyVariable[] {
  const custom = (name: string, options: string[], value: string[], allValue?: string): LegacyVariable => ({
    name,
    type: 'custom',
    multi: true,
    includeAll: true,
    allValue,
    current: { value, text: value },
    // the legacy model keeps the All option first (TemplateSrv.getAllValue skips options[0])
    options: [{ value: '$__all', text: 'All' }, ...options.map((o) => ({ value: o, text: o }))],
  });
  return [
    custom('nodes', NODE_OPTIONS, sel.nodes),
    custom('nodesAny', NODE_OPTIONS, sel.nodesAny, '.*'),
    { name: 'pattern', type: 'textbox', current: { value: sel.pattern }, options: [] },
    custom('env', ENV_OPTIONS, sel.env),
    custom('envAny', ENV_OPTIONS, sel.envAny, '*'),
  ];
}

interface Path {
  name: string;
  /** A TemplateSrv and the scopedVars of a panel query, and of a repeated panel's query. */
  make(sel: Selection): { srv: TemplateSrv; panel: ScopedVars; repeated: ScopedVars };
}

const PATHS: Path[] = [
  {
    name: 'Scenes dashboard (sceneGraph.interpolate)',
    make(sel) {
      const { dashboard, panel, repeatedPanel } = sceneDashboard(sel);
      return {
        srv: sceneTemplateSrv(dashboard),
        panel: { __sceneObject: { text: '__sceneObject', value: panel } },
        repeated: { __sceneObject: { text: '__sceneObject', value: repeatedPanel } },
      };
    },
  },
  {
    name: 'legacy dashboard (TemplateSrv formatVariableValue)',
    make(sel) {
      return {
        srv: legacyTemplateSrv(legacyVariables(sel)),
        panel: {},
        // a legacy repeated panel gets its value as a scoped variable
        repeated: { nodes: { text: 'web.2', value: 'web.2' } },
      };
    },
  },
];

const SOME: Selection = {
  nodes: ['web-1', 'web.2'],
  nodesAny: ['db-1', 'web.2'],
  pattern: 'web-.*',
  env: ['prod', 'staging'],
  envAny: ['staging'],
};
const ALL_SELECTED: Selection = { nodes: ALL, nodesAny: ALL, pattern: '', env: ALL, envAny: ALL };

describe.each(PATHS)('variables on a $name', (path) => {
  it('passes a single (textbox) value as typed: a regex stays a regex', () => {
    const { srv, panel } = path.make(SOME);
    expect(interpolateFilters({ node: '$pattern' }, panel, srv).node).toBe('web-.*');
    expect(interpolateFilters({ node: '${pattern}' }, panel, srv).node).toBe('web-.*');
  });

  it('turns a multi-value node variable into an alternation of escaped names', () => {
    const { srv, panel } = path.make(SOME);
    expect(interpolateFilters({ node: '$nodes' }, panel, srv).node).toBe('(?:web-1|web\\.2)');
    expect(interpolateFilters({ node: '$nodesAny' }, panel, srv).node).toBe('(?:db-1|web\\.2)');
    // the backend anchors it as ^(?:(?:web-1|web\.2))$: web.2 matches only itself
    const anchored = new RegExp(`^(?:${interpolateFilters({ node: '$nodes' }, panel, srv).node})$`);
    expect(['web-1', 'web.2', 'webx2', 'web-10'].filter((n) => anchored.test(n))).toEqual(['web-1', 'web.2']);
  });

  it('joins multi-value environments with commas', () => {
    const { srv, panel } = path.make(SOME);
    expect(interpolateFilters({ environment: '$env', role: '$envAny' }, panel, srv)).toEqual({
      environment: 'prod,staging',
      role: 'staging',
    });
  });

  it('reads All as no filter, with or without a custom all value', () => {
    const { srv, panel } = path.make(ALL_SELECTED);
    expect(interpolateFilters({ node: '$nodes', environment: '$env', role: '$envAny' }, panel, srv)).toEqual({
      node: '',
      environment: '',
      role: '',
    });
    // Prometheus-style `.*`: Grafana inserts it unformatted; it means every node
    expect(interpolateFilters({ node: '$nodesAny' }, panel, srv).node).toBe('');
  });

  it('keeps All meaning "any" inside a larger expression', () => {
    const { srv, panel } = path.make(ALL_SELECTED);
    expect(interpolateFilters({ node: '$nodes-canary' }, panel, srv).node).toBe('.*-canary');
    expect(interpolateFilters({ node: '$nodesAny-canary' }, panel, srv).node).toBe('.*-canary');
  });

  it("gives a repeated panel its own value even while the dashboard variable is All", () => {
    const { srv, repeated } = path.make(ALL_SELECTED);
    expect(interpolateFilters({ node: '$nodes' }, repeated, srv).node).toBe('web.2');
  });

  it('lists every option as names when they are picked one by one, not via All', () => {
    const { srv, panel } = path.make({ ...SOME, nodes: [...NODE_OPTIONS], env: [...ENV_OPTIONS] });
    expect(interpolateFilters({ node: '$nodes', environment: '$env' }, panel, srv)).toEqual({
      node: '(?:web-1|web\\.2|db-1)',
      environment: 'prod,staging',
    });
  });

  it('leaves text without variables, and unknown variables, alone', () => {
    const { srv, panel } = path.make(SOME);
    expect(interpolateFilters({ node: 'db-[0-9]+', environment: 'prod' }, panel, srv)).toEqual({
      node: 'db-[0-9]+',
      environment: 'prod',
    });
    expect(interpolateFilters({ node: '$nosuch' }, panel, srv).node).toBe('$nosuch');
  });

  it('is what DataSource.applyTemplateVariables and interpolateVariablesInQueries send', () => {
    const { srv, panel } = path.make(SOME);
    setTemplateSrv(srv);
    const ds = new DataSource(settings());
    const q: RunlensQuery = {
      refId: 'A',
      queryType: 'topology',
      groupBy: 'role',
      layout: 'auto',
      environment: '$env',
      role: 'web',
      node: '$nodes',
    };
    const want = { ...q, environment: 'prod,staging', node: '(?:web-1|web\\.2)' };
    expect(ds.applyTemplateVariables(q, panel)).toEqual(want);
    expect(ds.interpolateVariablesInQueries([q], panel)).toEqual([
      { ...want, datasource: { uid: 'ds-uid', type: 'runlens-topology-datasource' } },
    ]);
  });
});

describe('filter normalisation', () => {
  it('collapses every-one markers in name lists', () => {
    expect(normaliseNames('prod, staging,')).toBe('prod,staging');
    for (const all of ['$__all', '*', '.*', 'All', 'prod,*']) {
      expect(normaliseNames(all)).toBe('');
    }
  });

  it('collapses a node regex that matches every node', () => {
    expect(normaliseNode(' .* ')).toBe('');
    expect(normaliseNode('$__all')).toBe('');
    expect(normaliseNode('web.*')).toBe('web.*');
  });
});

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
