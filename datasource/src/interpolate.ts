import { escapeRegex, ScopedVars } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';

/** The value Grafana stores for a variable set to "All" (ALL_VARIABLE_VALUE in Grafana and Scenes). */
export const ALL_VALUE = '$__all';

/**
 * Values that mean "every one" in a name filter (environment, role). The backend treats the same
 * set this way (contracts: `$__all`, `*`, `.*`, `All`); the frontend turns them into "" so the
 * query, and the live channel it opens, carry no filter at all.
 */
const ALL_NAMES = new Set([ALL_VALUE, '*', '.*', 'All']);

/** Node regexes that match every node once the backend anchors them as ^(?:…)$. */
const ALL_NODE_REGEXES = new Set([ALL_VALUE, '.*']);

/**
 * What a custom format function receives as its second argument. Grafana passes the variable's
 * model (legacy TemplateSrv: formatVariableValue calls `format(value, variable, formatVariableValue)`,
 * grafana/grafana public/app/features/templating/formatVariableValue.ts), or for Scenes dashboards
 * only `{ name, type, multi, includeAll }` (grafana/scenes
 * packages/scenes/src/variables/interpolation/sceneInterpolator.ts, formatValue).
 */
interface FormatVariable {
  name?: string;
  type?: string;
  multi?: boolean;
  includeAll?: boolean;
  current?: { value?: unknown };
  options?: Array<{ value?: unknown }>;
}

type CustomFormat = (value: unknown, variable?: FormatVariable) => string;

function isAllMarker(value: unknown): boolean {
  return value === ALL_VALUE || (Array.isArray(value) && value.includes(ALL_VALUE));
}

function sameMembers(a: unknown[], b: unknown[]): boolean {
  const set = new Set(b.map(String));
  return a.length === set.size && a.every((v) => set.has(String(v)));
}

/**
 * Whether a value handed to a custom format function is a variable's "All" selection.
 *
 * Neither code path hands the format function `$__all` itself: for All without a custom all
 * value both expand it to every option's value (TemplateSrv.getAllValue in
 * public/app/features/templating/template_srv.ts; MultiValueVariable.getValue in Scenes), and with
 * a custom all value (e.g. Prometheus-style `.*`) neither calls the format function at all but
 * inserts the custom value as it is (template_srv.ts "skip formatting of custom all values";
 * CustomAllValue.formatter in Scenes). So All is recognised as: the list of every option of a
 * variable whose current value is `$__all`. The variable's model comes with the call (legacy) or
 * from templateSrv.getVariables() (Scenes, whose TemplateSrv returns the scene's variables as
 * legacy models). Requiring the whole option list keeps a repeated panel's single value, which
 * Grafana formats with the dashboard variable's model (scopedVars), from reading as All.
 */
function isAllSelection(value: unknown, variable: FormatVariable | undefined, templateSrv: TemplateSrv): boolean {
  if (isAllMarker(value)) {
    return true;
  }
  if (!Array.isArray(value)) {
    return false;
  }
  let model: FormatVariable | undefined = variable?.current ? variable : undefined;
  if (!model && variable?.name) {
    model = (templateSrv.getVariables() as unknown as FormatVariable[]).find((v) => v.name === variable.name);
  }
  if (!model || !isAllMarker(model.current?.value)) {
    return false;
  }
  const options = (model.options ?? []).map((o) => o.value).filter((v) => !isAllMarker(v));
  return sameMembers(value, options);
}

/**
 * The `node` filter: an RE2 expression that the backend anchors as ^(?:expr)$.
 * - a single value (a textbox, a single-select variable, a repeated panel's value) is inserted as
 *   typed, so `web-.*` stays a regex;
 * - a multi-value selection becomes `(?:v1|v2)` with each value regex-escaped (they are names);
 * - All becomes `.*` inside a larger expression, and a filter that is only All becomes "".
 */
export function nodeFormat(templateSrv: TemplateSrv): CustomFormat {
  return (value, variable) => {
    if (isAllSelection(value, variable, templateSrv)) {
      return '.*';
    }
    if (Array.isArray(value)) {
      return `(?:${value.map((v) => escapeRegex(String(v))).join('|')})`;
    }
    return String(value ?? '');
  };
}

/** The `environment` and `role` filters: a comma-separated list of names; All becomes "". */
export function namesFormat(templateSrv: TemplateSrv): CustomFormat {
  return (value, variable) => {
    if (isAllSelection(value, variable, templateSrv)) {
      return '';
    }
    if (Array.isArray(value)) {
      return value.map(String).join(',');
    }
    return String(value ?? '');
  };
}

/** A comma list with every-one markers (a custom all value such as `.*`, `*`, `All`) collapsed to "". */
export function normaliseNames(list: string): string {
  const names = list
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  if (names.some((n) => ALL_NAMES.has(n))) {
    return '';
  }
  return names.join(',');
}

/** A node regex that matches every node (`.*`, `$__all`) becomes "", no filter. */
export function normaliseNode(expr: string): string {
  const trimmed = expr.trim();
  return ALL_NODE_REGEXES.has(trimmed) ? '' : trimmed;
}

export interface Filters {
  environment?: string;
  role?: string;
  node?: string;
}

/** Interpolates dashboard variables in the three filters the backend reads. */
export function interpolateFilters<T extends Filters>(query: T, scopedVars: ScopedVars, templateSrv: TemplateSrv): T {
  const names = namesFormat(templateSrv);
  const node = nodeFormat(templateSrv);
  const out = { ...query };
  if (query.environment) {
    out.environment = normaliseNames(templateSrv.replace(query.environment, scopedVars, names));
  }
  if (query.role) {
    out.role = normaliseNames(templateSrv.replace(query.role, scopedVars, names));
  }
  if (query.node) {
    out.node = normaliseNode(templateSrv.replace(query.node, scopedVars, node));
  }
  return out;
}
