import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { RunlensOptions, RunlensQuery, RunlensSecureOptions } from './types';

export const plugin = new DataSourcePlugin<DataSource, RunlensQuery, RunlensOptions, RunlensSecureOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
