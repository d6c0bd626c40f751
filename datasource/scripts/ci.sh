#!/usr/bin/env bash
# Installs the frontend's npm packages from package-lock.json, type-checks, runs the unit tests and
# builds dist/ (module.js, plugin.json, README.md, img/). The Go backend binaries are built
# separately (go build ./datasource; Magefile's PluginBackend).
set -euo pipefail
cd "$(dirname "$0")/.."

npm ci --no-audit --no-fund
npm run typecheck
npm run build
npm test
