#!/usr/bin/env bash
# Creates (or reuses) target/native-venv: a Python venv with our `runtimeuse_client`
# package (python/, Rust core built by maturin) and the test tools of
# python/tests/requirements.txt. Prints the venv's python path on stdout (everything else
# goes to stderr), so callers can do: PY="$(scripts/python-venv.sh)".
#
# Idempotent and fast when up to date: the package is rebuilt only when a hash of its
# sources (python/, the client and protocol crates, Cargo.toml, Cargo.lock) differs from
# the one stamped by the last successful install.
#
# RUNTIMEUSE_PY_VENV chooses another venv (the benchmark keeps a release one apart).
# RUNTIMEUSE_PY_PROFILE=release builds an optimised extension (default: the dev profile,
# which reuses the workspace's debug build and compiles in well under a minute).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RUNTIMEUSE_PY_VENV:-$ROOT/target/native-venv}"
PY="$VENV/bin/python"
REQ="$ROOT/python/tests/requirements.txt"
PROFILE="${RUNTIMEUSE_PY_PROFILE:-dev}"
HOST_PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.native-package.stamp"

sources_hash() {
    cd "$ROOT"
    {
        echo "profile=$PROFILE"
        find python crates/runtimeuse-client crates/runtimeuse-protocol -type f \
            | grep -v -e '/__pycache__/' -e '^python/tests/' -e '\.pyc$' \
            | LC_ALL=C sort | xargs sha256sum
        sha256sum Cargo.toml Cargo.lock "$REQ"
    } | sha256sum | cut -d' ' -f1
}

HASH="$(sources_hash)"
if [[ -x "$PY" ]] && "$PY" -c 'import runtimeuse_client._native' 2>/dev/null \
    && [[ "$(cat "$STAMP" 2>/dev/null)" == "$HASH" ]]; then
    echo "$PY"
    exit 0
fi

# A venv whose interpreter no longer runs (moved repo, upgraded host python) is rebuilt.
if [[ -e "$VENV" ]] && ! { [[ -x "$PY" ]] && "$PY" -c 'import sys' 2>/dev/null; }; then
    echo "python-venv: rebuilding broken venv at $VENV" >&2
    rm -rf "$VENV"
fi

if [[ ! -x "$PY" ]]; then
    echo "python-venv: creating $VENV" >&2
    mkdir -p "$(dirname "$VENV")"
    if ! "$HOST_PYTHON" -m venv "$VENV" >&2; then
        # Debian-like hosts ship pip without ensurepip (python3-venv); fall back to a
        # bare venv populated by the host's pip.
        echo "python-venv: 'python3 -m venv' failed; using the host pip instead" >&2
        rm -rf "$VENV"
        "$HOST_PYTHON" -m venv --without-pip "$VENV" >&2
    fi
fi

pip_install() {
    "$PY" -m pip install --quiet --disable-pip-version-check "$@"
}
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    pip_install() {
        "$HOST_PYTHON" -m pip --python "$PY" install --quiet --disable-pip-version-check "$@"
    }
fi

rm -f "$STAMP"
echo "python-venv: installing test tools" >&2
pip_install -r "$REQ" >&2
echo "python-venv: building and installing ./python (profile $PROFILE)" >&2
started=$SECONDS
# The version does not change between source edits: uninstall so that pip installs the
# fresh build (and only the package's dependencies are left alone).
"$PY" -m pip uninstall --quiet --yes runtimeuse-client >/dev/null 2>&1 || true
pip_install --config-settings=build-args="--profile $PROFILE" "$ROOT/python" >&2
echo "python-venv: package built in $((SECONDS - started))s" >&2
echo "$HASH" >"$STAMP"
echo "$PY"
