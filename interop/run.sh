#!/usr/bin/env bash
# Runs the interop suite: the published runtimeuse-client (PyPI) against our runtime.
# Builds nothing: the binary comes from $RUNTIMEUSE_BIN (default target/debug/runtimeuse).
# Extra arguments go to pytest, e.g.  interop/run.sh -k secrets -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$("$ROOT/scripts/interop-venv.sh")"
cd "$ROOT"
exec "$PY" -m pytest interop -q "$@"
