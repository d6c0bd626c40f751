import {
  AnnotationQuery,
  CoreApp,
  DataSourceInstanceSettings,
  ScopedVars,
  StreamingFrameAction,
} from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv, StreamOptionsProvider } from '@grafana/runtime';

import { interpolateFilters } from './interpolate';
import { DEFAULT_ANNOTATION_QUERY, DEFAULT_QUERY, RunlensOptions, RunlensQuery } from './types';

/**
 * How many rows a streamed frame may hold. A topology frame is the whole fleet, replaced on every
 * update, so the limit only has to be larger than any fleet; Grafana's default (the panel's
 * maxDataPoints, else 500) would cut a large fleet's nodes and edges off.
 */
export const STREAM_MAX_ROWS = 100_000;

/**
 * Topology frames arrive over Grafana Live; every message is the complete, sorted node (or edge)
 * list, so the panel must replace the frame rather than append rows to it.
 */
export const replaceStreamOptions: StreamOptionsProvider<RunlensQuery> = () => ({
  action: StreamingFrameAction.Replace,
  maxLength: STREAM_MAX_ROWS,
});

export class DataSource extends DataSourceWithBackend<RunlensQuery, RunlensOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<RunlensOptions>) {
    super(instanceSettings);
    this.streamOptionsProvider = replaceStreamOptions;
    // Run changes as annotations with the standard annotation editor (which shows this plugin's
    // QueryEditor); the backend answers a `changes` query with time, timeEnd, title, text, tags.
    this.annotations = {
      getDefaultQuery: () => ({ ...DEFAULT_ANNOTATION_QUERY }),
      prepareQuery: (anno: AnnotationQuery<RunlensQuery>): RunlensQuery => {
        const target = anno.target;
        return {
          ...target,
          refId: target?.refId || 'Anno',
          queryType: target?.queryType ?? 'changes',
        };
      },
    };
  }

  getDefaultQuery(_app: CoreApp): Partial<RunlensQuery> {
    return { ...DEFAULT_QUERY };
  }

  /** Hidden queries are not sent to the backend. */
  filterQuery(query: RunlensQuery): boolean {
    return !query.hide;
  }

  /**
   * Interpolates dashboard variables (see interpolate.ts): `node` is a regular expression the
   * backend anchors, so a multi-value variable becomes `(?:a|b)` of escaped names and a single
   * value is kept as typed; `environment` and `role` are names, so a multi-value variable becomes
   * a comma-separated list. All, and a custom all value such as `.*`, become "" (no filter).
   */
  applyTemplateVariables(query: RunlensQuery, scopedVars: ScopedVars): RunlensQuery {
    return {
      ...interpolateFilters(query, scopedVars, getTemplateSrv()),
      queryType: query.queryType ?? DEFAULT_QUERY.queryType,
    };
  }

  /** Explore's "open in…" and dashboard export interpolate the same way the query does. */
  interpolateVariablesInQueries(queries: RunlensQuery[], scopedVars: ScopedVars): RunlensQuery[] {
    return queries.map((q) => ({ ...this.applyTemplateVariables(q, scopedVars), datasource: this.getRef() }));
  }
}
