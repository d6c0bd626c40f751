// Two TemplateSrv implementations for the interpolation tests, one per code path Grafana takes.
//
// Grafana's TemplateSrv (grafana/grafana public/app/features/templating/template_srv.ts, replace)
// hands interpolation to Scenes whenever the query comes from a Scenes dashboard (scopedVars
// carries __sceneObject, or window.__grafanaSceneContext is active): sceneTemplateSrv does exactly
// that with the real @grafana/scenes. Otherwise it formats the value itself: legacyTemplateSrv
// follows template_srv.ts (_evaluateVariableExpression) and formatVariableValue.ts step by step
// for the cases the datasource uses: a custom format function receives (value, variable model),
// All expands to every option's value or, with a custom all value, skips formatting entirely.
import { ScopedVars, TypedVariableModel } from '@grafana/data';
import { TemplateSrv } from '@grafana/runtime';
import { sceneGraph, SceneObject } from '@grafana/scenes';

const ALL_VARIABLE_VALUE = '$__all';

/**
 * The variable model the legacy path formats with (the parts template_srv.ts reads), and what
 * templateSrv.getVariables() returns on a Scenes dashboard (getVariablesCompatibility: the scene's
 * variables as legacy models, options kept).
 */
export interface LegacyVariable {
  name: string;
  type: string;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
  current: { value: string | string[]; text?: string | string[] };
  options: Array<{ value: string; text: string }>;
}

type FormatArg = string | Function | undefined;

// Grafana's variableRegex (public/app/features/variables/utils.ts), for the $name and
// ${name} / ${name:format} forms the queries use.
const VARIABLE_REGEX = /\$(\w+)|\$\{(\w+)(?::([^}]+))?\}/g;

function isAllValue(value: unknown): boolean {
  return value === ALL_VARIABLE_VALUE || (Array.isArray(value) && value[0] === ALL_VARIABLE_VALUE);
}

export function legacyTemplateSrv(variables: LegacyVariable[]): TemplateSrv {
  const byName = new Map(variables.map((v) => [v.name, v]));

  // formatVariableValue.ts: only the custom-function branch and the no-format default (glob).
  const formatVariableValue = (value: unknown, format: FormatArg, variable: LegacyVariable | undefined): string => {
    const model = variable || {};
    if (value === null || value === undefined) {
      return '';
    }
    if (!Array.isArray(value) && typeof value === 'object') {
      value = `${value}`;
    }
    if (typeof format === 'function') {
      return format(value, model, formatVariableValue);
    }
    if (format) {
      throw new Error(`legacyTemplateSrv models custom format functions only, not ${String(format)}`);
    }
    return Array.isArray(value) && value.length > 1 ? `{${value.join(',')}}` : String(value);
  };

  const srv = {
    getVariables: () => variables as unknown as TypedVariableModel[],
    containsTemplate: (target?: string) => !!target && /\$\w+|\$\{/.test(target),
    updateTimeRange: () => {},
    replace(target?: string, scopedVars?: ScopedVars, format?: FormatArg): string {
      if (!target) {
        return target ?? '';
      }
      return target.replace(VARIABLE_REGEX, (match, var1, var2, fmt2) => {
        const name: string = var1 || var2;
        const fmt: FormatArg = fmt2 || format;
        const variable = byName.get(name);
        const scopedVar = scopedVars?.[name];
        if (scopedVar && scopedVar.value !== null && scopedVar.value !== undefined) {
          // a repeated panel: the scoped value, formatted with the dashboard variable's model
          return formatVariableValue(scopedVar.value, fmt, variable);
        }
        if (!variable) {
          return match;
        }
        let value: unknown = variable.current.value;
        if (isAllValue(value)) {
          // getAllValue: the custom all value, else every option after the All option
          value = variable.allValue ? variable.allValue : variable.options.slice(1).map((o) => o.value);
          if (variable.allValue && fmt !== 'text' && fmt !== 'percentencode') {
            // "skip formatting of custom all values"
            return srv.replace(value as string);
          }
        }
        return formatVariableValue(value, fmt, variable);
      });
    },
  };
  return srv as unknown as TemplateSrv;
}

/** The legacy model of a scene variable, as Grafana's getVariablesCompatibility returns it. */
function toLegacy(v: { state: object }): LegacyVariable {
  const s = v.state as {
    name: string;
    type: string;
    value?: string | string[];
    text?: string | string[];
    isMulti?: boolean;
    includeAll?: boolean;
    allValue?: string;
    options?: Array<{ label: string; value: string }>;
  };
  return {
    name: s.name,
    type: s.type,
    multi: s.isMulti,
    includeAll: s.includeAll,
    allValue: s.allValue,
    current: { value: s.value ?? '', text: s.text },
    options: (s.options ?? []).map((o) => ({ value: String(o.value), text: o.label })),
  };
}

export function sceneTemplateSrv(dashboard: SceneObject): TemplateSrv {
  const srv = {
    getVariables: () => sceneGraph.getVariables(dashboard).state.variables.map(toLegacy) as unknown as TypedVariableModel[],
    containsTemplate: (target?: string) => !!target && /\$\w+|\$\{/.test(target),
    updateTimeRange: () => {},
    replace(target?: string, scopedVars?: ScopedVars, format?: FormatArg): string {
      // template_srv.ts: the query's own scene object first, else the active dashboard
      const scope = (scopedVars?.__sceneObject?.value as SceneObject | undefined) ?? dashboard;
      return sceneGraph.interpolate(scope, target, scopedVars, format as never);
    },
  };
  return srv as unknown as TemplateSrv;
}
