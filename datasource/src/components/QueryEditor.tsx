import React, { ChangeEvent, useEffect, useState } from 'react';
import { QueryEditorProps } from '@grafana/data';
import { InlineField, InlineFieldRow, Input, RadioButtonGroup } from '@grafana/ui';

import type { DataSource } from '../datasource';
import {
  CHANGE_GROUP_BY_OPTIONS,
  ChangeGroupBy,
  DEFAULT_QUERY,
  GROUP_BY_OPTIONS,
  GroupBy,
  Layout,
  LAYOUT_OPTIONS,
  QUERY_TYPES,
  QueryType,
  queryLayout,
  RunlensOptions,
  RunlensQuery,
} from '../types';

export type RunlensQueryEditorProps = QueryEditorProps<DataSource, RunlensQuery, RunlensOptions>;

type FilterKey = 'environment' | 'role' | 'node';

const queryTypeOptions = QUERY_TYPES.map((t) => ({ value: t.value, label: t.label, description: t.description }));
const groupByOptions = GROUP_BY_OPTIONS.map((g) => ({ value: g.value, label: g.label }));
const changeGroupByOptions = CHANGE_GROUP_BY_OPTIONS.map((g) => ({ value: g.value, label: g.label, description: g.description }));
const layoutOptions = LAYOUT_OPTIONS.map((l) => ({ value: l.value, label: l.label, description: l.description }));

const TOPOLOGY_GROUP_BY: readonly string[] = GROUP_BY_OPTIONS.map((g) => g.value);
const CHANGE_GROUP_BY: readonly string[] = CHANGE_GROUP_BY_OPTIONS.map((g) => g.value);

/** groupBy means one thing for topology (node | role) and another for changes/impact (set | run). */
function groupByFor(queryType: QueryType, current: RunlensQuery['groupBy']): RunlensQuery['groupBy'] {
  switch (queryType) {
    case 'topology':
      return current && TOPOLOGY_GROUP_BY.includes(current) ? current : 'node';
    case 'changes':
    case 'impact':
      return current && CHANGE_GROUP_BY.includes(current) ? current : 'set';
    default:
      return undefined;
  }
}

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
  const isChanges = queryType === 'changes' || queryType === 'impact';

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
            onChange={(value) => {
              const { groupBy: _old, ...rest } = query;
              const groupBy = groupByFor(value, query.groupBy);
              onChange(groupBy ? { ...rest, queryType: value, groupBy } : { ...rest, queryType: value });
              onRunQuery();
            }}
          />
        </InlineField>
        {isTopology && (
          <>
            <InlineField label="Group by" tooltip="One graph node per fleet node, or one per role">
              <RadioButtonGroup<GroupBy>
                aria-label="Group by"
                options={groupByOptions}
                value={groupByFor('topology', query.groupBy) as GroupBy}
                onChange={(value) => update({ groupBy: value })}
              />
            </InlineField>
            <InlineField
              label="Layout"
              tooltip="Pinned: fixed positions, roles in layers by dependency and environments apart, so a live view never moves. Auto: the Node Graph panel lays the graph out itself (for static views)."
            >
              <RadioButtonGroup<Layout>
                aria-label="Layout"
                options={layoutOptions}
                value={queryLayout(query.layout)}
                onChange={(value) => update({ layout: value })}
              />
            </InlineField>
          </>
        )}
        {isChanges && (
          <InlineField label="Group by" tooltip="One per change set (a roll-out across a role), or one per run">
            <RadioButtonGroup<ChangeGroupBy>
              aria-label="Group by"
              options={changeGroupByOptions}
              value={groupByFor(queryType, query.groupBy) as ChangeGroupBy}
              onChange={(value) => update({ groupBy: value })}
            />
          </InlineField>
        )}
      </InlineFieldRow>
      <InlineFieldRow>
        <FilterInput
          id={`runlens-environment-${query.refId}`}
          label="Environment"
          tooltip="Only nodes in this environment (several: comma-separated); dashboard variables are allowed"
          placeholder="all"
          width={20}
          value={query.environment}
          onCommit={onFilter('environment')}
        />
        <FilterInput
          id={`runlens-role-${query.refId}`}
          label="Role"
          tooltip="Only nodes with this role (several: comma-separated), or (none) for nodes without one; dashboard variables are allowed"
          placeholder="all"
          width={20}
          value={query.role}
          onCommit={onFilter('role')}
        />
        <FilterInput
          id={`runlens-node-${query.refId}`}
          label="Node"
          tooltip="A regular expression (RE2) matched against the whole node name (anchored: web1 does not match web10); a multi-value variable matches any of its values; dashboard variables are allowed"
          placeholder=".*"
          width={30}
          value={query.node}
          onCommit={onFilter('node')}
        />
      </InlineFieldRow>
    </>
  );
}
