#!/usr/bin/env bash
# Install the TypeScript SDK MCP server of the differential suite (tests/e2e/ts_server) with `npm ci`, exactly
# as package-lock.json pins it, into its gitignored node_modules. Idempotent: a stamp holds the lock file's
# sha256 and the node version; when both match nothing is installed again.
set -euo pipefail

dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/ts_server" && pwd)"
command -v node >/dev/null || { echo "ts-server: node is required (Node.js >= 18)"; exit 1; }
stamp="$dir/node_modules/.grantwall-lock.sha256"
want="$( (sha256sum "$dir/package-lock.json" | cut -d' ' -f1; node --version) | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "ts-server: $dir/node_modules is up to date"
    exit 0
fi
echo "ts-server: npm ci in $dir"
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
echo "$want" > "$stamp"
