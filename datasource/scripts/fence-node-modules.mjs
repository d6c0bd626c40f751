// Runs after `npm install` / `npm ci`. Some npm packages ship Go sources (flatted has
// golang/pkg/flatted/flatted.go, pulled in by @grafana/i18n → eslint), and the repository's Go
// module would take datasource/node_modules/... for packages of its own: `go vet ./...`,
// `go test ./...` and `go build ./...` would compile them. A go.mod makes node_modules a separate
// module, which the go tool leaves out of `./...`.
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const nodeModules = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'node_modules');
if (existsSync(nodeModules)) {
  writeFileSync(
    resolve(nodeModules, 'go.mod'),
    '// Written by datasource/scripts/fence-node-modules.mjs: keeps npm packages out of the Go module.\nmodule ignore_node_modules\n'
  );
}
