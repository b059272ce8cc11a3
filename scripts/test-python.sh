#!/usr/bin/env bash
# Tests of the Python package `runtimeuse_client` (python/, Rust core over PyO3):
#   1. builds and installs it into target/native-venv (scripts/python-venv.sh),
#   2. runs its own suite, python/tests,
#   3. runs the interop suite (interop/, written for the PyPI client) with our package in
#      place of the PyPI one; tests marked `pypi_only` (PyPI internals, websockets'
#      exception types) are deselected.
# Both suites drive the real runtime: $RUNTIMEUSE_BIN, else target/debug/runtimeuse (built
# here). Extra arguments go to both pytest runs, e.g.  scripts/test-python.sh -k abort -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "Python package: build and install (target/native-venv)"
PY="$(scripts/python-venv.sh)"

if [[ -z "${RUNTIMEUSE_BIN:-}" ]]; then
    step "runtime binary"
    cargo build -p runtimeuse --locked
    export RUNTIMEUSE_BIN="$ROOT/target/debug/runtimeuse"
fi

status=0
step "python/tests: our runtimeuse_client against the runtime"
"$PY" -m pytest python/tests -q "$@" || status=1

step "interop/: the interop suite with our runtimeuse_client in place of PyPI's"
"$PY" -m pytest interop -q -m "not pypi_only" "$@" || status=1

exit "$status"
