import React from 'react';
import { fireEvent, render, screen } from '@testing-library/react';

import type { DataSource } from '../datasource';
import { RunlensQuery } from '../types';
import { QueryEditor } from './QueryEditor';

function setup(query: Partial<RunlensQuery> = {}) {
  const onChange = vi.fn();
  const onRunQuery = vi.fn();
  const q: RunlensQuery = { refId: 'A', ...query };
  const utils = render(
    <QueryEditor query={q} onChange={onChange} onRunQuery={onRunQuery} datasource={{} as DataSource} />
  );
  return { onChange, onRunQuery, q, ...utils };
}

describe('QueryEditor', () => {
  it('defaults to topology grouped by node, pinned', () => {
    setup();
    expect(screen.getByRole('radio', { name: 'Topology' })).toBeChecked();
    expect(screen.getByRole('radio', { name: 'Node' })).toBeChecked();
    expect(screen.getByRole('radio', { name: 'Pinned' })).toBeChecked();
    expect(screen.getByRole('radio', { name: 'Auto' })).not.toBeChecked();
  });

  it('switches the query type, resets a groupBy the new type does not know, and runs the query', () => {
    const { onChange, onRunQuery } = setup({ queryType: 'topology', groupBy: 'role', environment: 'prod' });
    fireEvent.click(screen.getByRole('radio', { name: 'Changes' }));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'changes', groupBy: 'set', environment: 'prod' });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  it('keeps a groupBy that the new query type shares', () => {
    const { onChange } = setup({ queryType: 'changes', groupBy: 'run' });
    fireEvent.click(screen.getByRole('radio', { name: 'Impact' }));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'impact', groupBy: 'run' });
  });

  it('sets groupBy when switching back to topology', () => {
    const { onChange } = setup({ queryType: 'runs' });
    fireEvent.click(screen.getByRole('radio', { name: 'Topology' }));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'topology', groupBy: 'node' });
  });

  it('drops groupBy for runs, which has none', () => {
    const { onChange } = setup({ queryType: 'impact', groupBy: 'set' });
    fireEvent.click(screen.getByRole('radio', { name: 'Runs' }));
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'runs' });
  });

  it('hides group by and layout for runs', () => {
    setup({ queryType: 'runs' });
    expect(screen.getByRole('radio', { name: 'Runs' })).toBeChecked();
    expect(screen.queryByText('Group by')).not.toBeInTheDocument();
    expect(screen.queryByRole('radio', { name: 'Role' })).not.toBeInTheDocument();
    expect(screen.queryByRole('radio', { name: 'Pinned' })).not.toBeInTheDocument();
  });

  it.each(['changes', 'impact'] as const)('offers change set / run grouping for %s, not the layout', (queryType) => {
    const { onChange, onRunQuery } = setup({ queryType });
    expect(screen.getByRole('radio', { name: new RegExp(`^${queryType}$`, 'i') })).toBeChecked();
    expect(screen.getByRole('radio', { name: 'Change set' })).toBeChecked();
    expect(screen.queryByRole('radio', { name: 'Node' })).not.toBeInTheDocument();
    expect(screen.queryByRole('radio', { name: 'Pinned' })).not.toBeInTheDocument();
    fireEvent.click(screen.getByRole('radio', { name: 'Run' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType, groupBy: 'run' });
    expect(onRunQuery).toHaveBeenCalledTimes(1);
    // the filters apply to every query type
    expect(screen.getByRole('textbox', { name: 'Environment' })).toBeInTheDocument();
    expect(screen.getByRole('textbox', { name: 'Role' })).toBeInTheDocument();
    expect(screen.getByRole('textbox', { name: 'Node' })).toBeInTheDocument();
  });

  it('shows group by and layout for topology', () => {
    const { onChange, onRunQuery } = setup({ queryType: 'topology' });
    expect(screen.getByText('Group by')).toBeInTheDocument();
    fireEvent.click(screen.getByRole('radio', { name: 'Role' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'topology', groupBy: 'role' });
    fireEvent.click(screen.getByRole('radio', { name: 'Auto' }));
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'topology', layout: 'auto' });
    expect(onRunQuery).toHaveBeenCalledTimes(2);
  });

  it.each([
    [true, 'Pinned'],
    [false, 'Pinned'],
    ['auto', 'Auto'],
    ['pinned', 'Pinned'],
  ] as const)('reads a saved layout %s as %s', (layout, shown) => {
    setup({ queryType: 'topology', layout });
    expect(screen.getByRole('radio', { name: shown })).toBeChecked();
  });

  it('commits filters on blur, not on every keystroke', () => {
    const { onChange, onRunQuery, rerender } = setup({ queryType: 'runs' });
    const node = screen.getByRole('textbox', { name: 'Node' });
    fireEvent.change(node, { target: { value: 'web-0[0-9]' } });
    expect(onChange).not.toHaveBeenCalled();
    fireEvent.blur(node);
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'runs', node: 'web-0[0-9]' });
    expect(onRunQuery).toHaveBeenCalledTimes(1);

    // once Grafana passes the committed query back, blurring again without a change does not re-run
    rerender(
      <QueryEditor query={onChange.mock.calls[0][0]} onChange={onChange} onRunQuery={onRunQuery} datasource={{} as DataSource} />
    );
    fireEvent.blur(screen.getByRole('textbox', { name: 'Node' }));
    expect(onRunQuery).toHaveBeenCalledTimes(1);
  });

  it('commits a filter on Enter and trims it', () => {
    const { onChange } = setup({ queryType: 'impact' });
    const env = screen.getByRole('textbox', { name: 'Environment' });
    fireEvent.change(env, { target: { value: ' $env ' } });
    fireEvent.keyDown(env, { key: 'Enter' });
    expect(onChange).toHaveBeenCalledWith({ refId: 'A', queryType: 'impact', environment: '$env' });
    const role = screen.getByRole('textbox', { name: 'Role' });
    fireEvent.change(role, { target: { value: 'web' } });
    fireEvent.blur(role);
    expect(onChange).toHaveBeenLastCalledWith({ refId: 'A', queryType: 'impact', role: 'web' });
  });

  it('shows the saved filters', () => {
    setup({ environment: 'prod', role: 'db', node: '^db-' });
    expect(screen.getByRole('textbox', { name: 'Environment' })).toHaveValue('prod');
    expect(screen.getByRole('textbox', { name: 'Role' })).toHaveValue('db');
    expect(screen.getByRole('textbox', { name: 'Node' })).toHaveValue('^db-');
  });
});
