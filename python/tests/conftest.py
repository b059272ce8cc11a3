"""Fixtures of the native package's suite, shared with the interop suite.

The runtime process (`runtime`, `start_runtime`) and the loopback HTTP server
(`http_server`) come from interop/conftest.py, and the callback helpers from
interop/_support.py, so both suites drive the real `runtimeuse` binary the same way.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import runtimeuse_client

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP = REPO_ROOT / "interop"

if not hasattr(runtimeuse_client, "_native"):
    raise RuntimeError(
        f"these tests need our runtimeuse_client (with its Rust core), not "
        f"{runtimeuse_client.__file__}; run scripts/test-python.sh"
    )

# interop/_support.py is imported by name from the tests.
sys.path.insert(0, str(INTEROP))

_spec = importlib.util.spec_from_file_location("_interop_fixtures", INTEROP / "conftest.py")
assert _spec is not None and _spec.loader is not None
_interop = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _interop  # dataclasses look their module up there
_spec.loader.exec_module(_interop)

# Re-exported so that pytest registers them for this suite.
runtime = _interop.runtime
start_runtime = _interop.start_runtime
http_server = _interop.http_server
Runtime = _interop.Runtime
HttpServer = _interop.HttpServer


@pytest.fixture
def client(runtime) -> runtimeuse_client.RuntimeUseClient:
    return runtimeuse_client.RuntimeUseClient(ws_url=runtime.url)
