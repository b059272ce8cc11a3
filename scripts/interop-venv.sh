#!/usr/bin/env bash
# Creates (or reuses) the Python venv for the interop suite at target/interop-venv and
# installs interop/requirements.txt from PyPI. Prints the venv's python path on stdout
# (everything else goes to stderr), so callers can do: PY="$(scripts/interop-venv.sh)".
#
# Idempotent and fast when already set up: pip only runs when the requirements differ
# from the copy stamped into the venv by the last successful install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/target/interop-venv"
REQ="$ROOT/interop/requirements.txt"
STAMP="$VENV/.interop-requirements.stamp"
PY="$VENV/bin/python"
HOST_PYTHON="${PYTHON:-python3}"

if [[ -x "$PY" ]] && "$PY" -c 'import sys' 2>/dev/null && cmp -s "$REQ" "$STAMP"; then
    echo "$PY"
    exit 0
fi

# A venv whose interpreter no longer runs (moved repo, upgraded host python) is rebuilt.
if [[ -e "$VENV" ]] && ! { [[ -x "$PY" ]] && "$PY" -c 'import sys' 2>/dev/null; }; then
    echo "interop-venv: rebuilding broken venv at $VENV" >&2
    rm -rf "$VENV"
fi

pip_install() {
    "$PY" -m pip install --quiet --disable-pip-version-check "$@"
}

if [[ ! -x "$PY" ]]; then
    echo "interop-venv: creating $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    if ! "$HOST_PYTHON" -m venv "$VENV" >&2; then
        # Debian-like hosts ship pip without ensurepip (python3-venv); fall back to a
        # bare venv populated by the host's pip.
        echo "interop-venv: 'python3 -m venv' failed; using the host pip instead" >&2
        rm -rf "$VENV"
        "$HOST_PYTHON" -m venv --without-pip "$VENV" >&2
    fi
fi

if ! "$PY" -m pip --version >/dev/null 2>&1; then
    pip_install() {
        "$HOST_PYTHON" -m pip --python "$PY" install --quiet --disable-pip-version-check "$@"
    }
fi

echo "interop-venv: installing $(basename "$REQ")" >&2
pip_install -r "$REQ" >&2
cp "$REQ" "$STAMP"
echo "$PY"
