"""Fixtures for the interop suite: the real `runtimeuse` binary and a loopback HTTP server.

The suite checks that the published `runtimeuse-client` (PyPI, unchanged) works against
our runtime. Everything runs on 127.0.0.1; nothing leaves the machine.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_RE = re.compile(r"^runtimeuse listening on ws://127\.0\.0\.1:(\d+)$")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

# Fast timings for tests: heartbeats every 0.2 s, short artifact drain grace.
DEFAULT_ARGS = ("--heartbeat-interval", "0.2", "--artifact-grace", "0.3")


def runtime_binary() -> Path:
    path = Path(os.environ.get("RUNTIMEUSE_BIN", "target/debug/runtimeuse"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


# --------------------------------------------------------------------------- runtime


class Runtime:
    """One `runtimeuse` process listening on a free loopback port."""

    def __init__(self, workdir: Path, args: tuple[str, ...] = DEFAULT_ARGS,
                 agent: str = "echo", env: dict[str, str] | None = None):
        binary = runtime_binary()
        if not binary.exists():
            pytest.fail(
                f"runtime binary not found at {binary}; build it with "
                "`cargo build -p runtimeuse` or set RUNTIMEUSE_BIN"
            )
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir.parent / f"{workdir.name}.stderr.log"
        self._stderr = open(self.stderr_path, "wb")
        self.argv = [str(binary), "--agent", agent, "--host", "127.0.0.1",
                     "--port", "0", *args]
        self.proc = subprocess.Popen(
            self.argv,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )
        self.stdout_lines: list[str] = []
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                self.stdout_lines.append(line)
                lines.put(line)
            lines.put(None)

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        self.port = self._wait_ready(lines)
        self.url = f"ws://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.port}"

    def _wait_ready(self, lines: queue.Queue[str | None]) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_S
        first: str | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                pytest.fail(f"runtime not ready after {READY_TIMEOUT_S}s\n{self.describe()}")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail(f"runtime exited before it was ready\n{self.describe()}")
            if first is None:
                first = line
            match = READY_RE.match(line)
            if match:
                if line != first:
                    self.kill()
                    pytest.fail(
                        "the ready line must be the first (and only) stdout line\n"
                        + self.describe()
                    )
                return int(match.group(1))

    def stderr_text(self) -> str:
        self._stderr.flush()
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def describe(self) -> str:
        tail = self.stderr_text()[-8000:]
        return (f"argv: {' '.join(self.argv)}\nexit code: {self.proc.poll()}\n"
                f"stdout: {self.stdout_lines!r}\nstderr (tail):\n{tail}")

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait, then SIGKILL. Returns the exit code (negative = signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return self.proc.returncode

    def stdout_after_exit(self) -> list[str]:
        """Every stdout line, once the process has exited and the pipe is drained."""
        self._pump.join(timeout=5)
        return list(self.stdout_lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime shared by the tests of one module (echo agent, fast timings)."""
    rt = Runtime(tmp_path_factory.mktemp("runtime") / "cwd")
    yield rt
    code = rt.terminate()
    if code != 0:
        # Reported by test_server.py::test_sigterm_exits_zero; here only a warning so a
        # teardown problem does not mask the module's own results.
        import warnings
        warnings.warn(f"runtime exited with {code} on SIGTERM\n{rt.describe()}")


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., Runtime]]:
    """Factory for a dedicated runtime (custom flags); stopped at test end."""
    started: list[Runtime] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Runtime:
        rt = Runtime(tmp_path / f"runtime{len(started)}", args or DEFAULT_ARGS, env=env)
        started.append(rt)
        return rt

    yield start
    for rt in started:
        rt.terminate()


# --------------------------------------------------------------------------- loopback HTTP


@dataclass
class Put:
    path: str
    body: bytes
    content_type: str | None
    headers: dict[str, str]


@dataclass
class HttpState:
    files: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    puts: list[Put] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: HttpState  # set on the per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _reply(self, status: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        with self.state.cond:
            self.state.gets.append(self.path)
        status = self.state.statuses.get(self.path)
        if status is not None:
            self._reply(status, f"status {status}".encode())
        elif self.path in self.state.files:
            self._reply(200, self.state.files[self.path], "application/octet-stream")
        else:
            self._reply(404, b"not found")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_PUT(self) -> None:  # noqa: N802
        body = self._read_body()
        status = self.state.statuses.get(self.path)
        if status is not None:
            self._reply(status)
            return
        put = Put(self.path, body, self.headers.get("Content-Type"),
                  {k.lower(): v for k, v in self.headers.items()})
        with self.state.cond:
            self.state.puts.append(put)
            self.state.cond.notify_all()
        self._reply(200)


class HttpServer:
    """Loopback file host (GET) and presigned-URL object store (PUT)."""

    def __init__(self) -> None:
        self.state = HttpState()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def serve(self, path: str, body: bytes) -> str:
        """Serves `body` at `path`; returns the full URL."""
        self.state.files[path] = body
        return self.url + path

    def fail(self, path: str, status: int) -> str:
        """Answers GET/PUT of `path` with `status`; returns the full URL."""
        self.state.statuses[path] = status
        return self.url + path

    @property
    def puts(self) -> list[Put]:
        with self.state.cond:
            return list(self.state.puts)

    def wait_for_put(self, path: str, timeout: float = 10.0, nth: int = 1) -> Put:
        """Blocks (call via asyncio.to_thread) until the `nth` PUT of `path` arrived."""
        deadline = time.monotonic() + timeout
        with self.state.cond:
            while True:
                matching = [put for put in self.state.puts if put.path == path]
                if len(matching) >= nth:
                    return matching[nth - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no PUT #{nth} of {path} within {timeout}s; got "
                        f"{[p.path for p in self.state.puts]}"
                    )
                self.state.cond.wait(remaining)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.close()

