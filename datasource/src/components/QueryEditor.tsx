import React, { ChangeEvent, useEffect, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, InlineSwitch, Input, RadioButtonGroup } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { DEFAULT_QUERY, GROUP_BY_OPTIONS, GroupBy, QUERY_TYPES, QueryType, RunlensOptions, RunlensQuery } from '../types';

export type RunlensQueryEditorProps = QueryEditorProps<DataSource, RunlensQuery, RunlensOptions>;

type FilterKey = 'environment' | 'role' | 'node';

const queryTypeOptions = QUERY_TYPES.map((t) => ({ value: t.value, label: t.label, description: t.description }));
const groupByOptions = GROUP_BY_OPTIONS.map((g) => ({ value: g.value, label: g.label }));

/**
 * A text filter that edits a local copy and commits it (and runs the query) on blur or Enter, so
 * typing a regex does not fire one backend query per keystroke.
 */
function FilterInput(props: {
  id: string;
  label: string;
  tooltip: string;
  placeholder: string;
  value: string | undefined;
  width: number;
  onCommit: (value: string) => void;
}) {
  const { id, label, tooltip, placeholder, value, width, onCommit } = props;
  const [draft, setDraft] = useState(value ?? '');
  useEffect(() => setDraft(value ?? ''), [value]);
  const commit = () => {
    if (draft !== (value ?? '')) {
      onCommit(draft);
    }
  };
  return (
    <InlineField label={label} tooltip={tooltip} htmlFor={id}>
      <Input
        id={id}
        width={width}
        value={draft}
        placeholder={placeholder}
        onChange={(e: ChangeEvent<HTMLInputElement>) => setDraft(e.currentTarget.value)}
        onBlur={commit}
        onKeyDown={(e) => {
          if (e.key === 'Enter') {
            commit();
          }
        }}
      />
    </InlineField>
  );
}

export function QueryEditor(props: RunlensQueryEditorProps) {
  const { query, onChange, onRunQuery } = props;
  const queryType: QueryType = query.queryType ?? DEFAULT_QUERY.queryType!;
  const isTopology = queryType === 'topology';

  const update = (patch: Partial<RunlensQuery>) => {
    onChange({ ...query, ...patch });
    onRunQuery();
  };

  const onFilter = (key: FilterKey) => (value: string) => update({ [key]: value.trim() } as Partial<RunlensQuery>);

  return (
    <>
      <InlineFieldRow>
        <InlineField label="Query type" tooltip={QUERY_TYPES.find((t) => t.value === queryType)?.description}>
          <RadioButtonGroup<QueryType>
            aria-label="Query type"
            options={queryTypeOptions}
            value={queryType}
            onChange={(value) =>
              update(
                value === 'topology'
                  ? { queryType: value, groupBy: query.groupBy ?? DEFAULT_QUERY.groupBy }
                  : { queryType: value }
              )
            }
          />
        </InlineField>
        {isTopology && (
          <>
            <InlineField label="Group by" tooltip="One graph node per fleet node, or one per role">
              <RadioButtonGroup<GroupBy>
                aria-label="Group by"
                options={groupByOptions}
                value={query.groupBy ?? DEFAULT_QUERY.groupBy}
                onChange={(value) => update({ groupBy: value })}
              />
            </InlineField>
            <InlineField
              label="Fixed layout"
              tooltip="Pin positions: environments in columns, roles in rows. Off lets the Node Graph panel lay out the graph."
              htmlFor="runlens-layout"
            >
              <InlineSwitch
                id="runlens-layout"
                value={!!query.layout}
                onChange={(e) => update({ layout: e.currentTarget.checked })}
              />
            </InlineField>
          </>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        <FilterInput
          id={`runlens-environment-${query.refId}`}
          label="Environment"
          tooltip="Only nodes in this environment; dashboard variables are allowed"
          placeholder="all"
          width={20}
          value={query.environment}
          onCommit={onFilter('environment')}
        />
        <FilterInput
          id={`runlens-role-${query.refId}`}
          label="Role"
          tooltip="Only nodes with this role, or (none) for nodes without one; dashboard variables are allowed"
          placeholder="all"
          width={20}
          value={query.role}
          onCommit={onFilter('role')}
        />
        <FilterInput
          id={`runlens-node-${query.refId}`}
          label="Node"
          tooltip="A regular expression (RE2) on the node name; dashboard variables are allowed"
          placeholder=".*"
          width={30}
          value={query.node}
          onCommit={onFilter('node')}
        />
      </InlineFieldRow>
    </>
  );
}
