import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const root = resolve(__dirname, '..');
const schemaPath = resolve(root, '../../shared/schemas/grafana-plugin.schema.json');
const pluginJson = JSON.parse(readFileSync(resolve(root, 'plugin.json'), 'utf8'));

function validator() {
  const schema = JSON.parse(readFileSync(schemaPath, 'utf8'));
  // The schema declares draft-07 ("http://json-schema.org/draft-07/schema", without the "#"),
  // which is Ajv 8's default draft; Ajv only knows the meta-schema by its "#" id.
  expect(schema.$schema).toMatch(/draft-07/);
  delete schema.$schema;
  // Its patterns escape '-' as \-, a syntax error in a unicode (/u) RegExp, which Ajv uses by default.
  // strict: false because the schema uses "additionalItems" beside a single-schema "items" (Ajv's strict mode rejects that).
  const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  return ajv.compile(schema);
}

describe('plugin.json', () => {
  it('validates against the Grafana plugin schema', () => {
    const validate = validator();
    const ok = validate(pluginJson);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the schema check catches a broken plugin.json', () => {
    const validate = validator();
    expect(validate({ ...pluginJson, id: 'Runlens Topology' })).toBe(false);
    expect(validate({ ...pluginJson, info: { ...pluginJson.info, keywords: undefined } })).toBe(false);
    expect(validate({ ...pluginJson, surprise: true })).toBe(false);
  });

  it('declares the datasource contract', () => {
    expect(pluginJson).toMatchObject({
      type: 'datasource',
      id: 'runlens-topology-datasource',
      name: 'runlens topology',
      backend: true,
      executable: 'gpx_runlens-topology-datasource',
      streaming: true,
      annotations: true,
      metrics: true,
      alerting: false,
      dependencies: { grafanaDependency: '>=11.1.0', plugins: [] },
    });
    expect(pluginJson.info.logos).toEqual({ small: 'img/logo.svg', large: 'img/logo.svg' });
    expect(readFileSync(resolve(root, pluginJson.info.logos.small), 'utf8')).toMatch(/<svg[\s>]/);
  });

  it('has the same version as package.json', () => {
    const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8'));
    expect(pluginJson.info.version).toBe(pkg.version);
  });
});
