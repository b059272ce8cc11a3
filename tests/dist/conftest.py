"""Fixtures for the dist tests: the artifacts scripts/dist built, installed the way users
install them, and a minimal root (bubblewrap) holding only the C library, a static busybox
as /bin/sh and the binary.

DIST_DIR (default: the repository's dist/) holds the artifacts.
"""

from __future__ import annotations

import glob
import http.server
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("DIST_DIR", ROOT / "dist"))
READY = re.compile(r"^RuntimeUse server listening on port (\d+)$")
BUSYBOX = Path("/bin/busybox")
APPLETS = ["cat", "echo", "ls", "mkdir", "printf", "pwd", "rm", "sleep", "test", "true", "false", "env"]


def one(pattern: str) -> Path:
    found = sorted(glob.glob(str(DIST / pattern)))
    assert len(found) == 1, f"expected one {pattern} in {DIST}, found {found}"
    return Path(found[0])


@pytest.fixture(scope="session")
def wheel() -> Path:
    return one("runtimeuse-*-py3-none-manylinux*x86_64.whl")


@pytest.fixture(scope="session")
def installed_binary(wheel, tmp_path_factory) -> Path:
    """`pip install --no-index` of the wheel into a fresh venv; the console script."""
    env_dir = tmp_path_factory.mktemp("wheel-venv") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
         "--find-links", str(DIST), "runtimeuse"],
        check=True,
    )
    binary = env_dir / "bin" / "runtimeuse"
    assert binary.is_file() and os.access(binary, os.X_OK), binary
    return binary


class Elf:
    """What the ELF header and program headers of a 64-bit little-endian binary say."""

    EM_X86_64 = 62
    EM_AARCH64 = 183
    PT_INTERP = 3

    def __init__(self, path: Path):
        data = path.read_bytes()
        assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
        assert data[4] == 2 and data[5] == 1, f"{path} is not a 64-bit little-endian ELF"
        self.type, self.machine = struct.unpack_from("<HH", data, 16)
        phoff, = struct.unpack_from("<Q", data, 32)
        phentsize, phnum = struct.unpack_from("<HH", data, 54)
        self.interpreter: str | None = None
        for i in range(phnum):
            base = phoff + i * phentsize
            kind, = struct.unpack_from("<I", data, base)
            if kind == self.PT_INTERP:
                offset, = struct.unpack_from("<Q", data, base + 8)
                size, = struct.unpack_from("<Q", data, base + 32)
                self.interpreter = data[offset:offset + size].rstrip(b"\0").decode()

    @property
    def is_static(self) -> bool:
        """No program interpreter: the kernel runs it with no loader and no C library."""
        return self.interpreter is None


def needed_libraries(binary: Path) -> list[str]:
    """Absolute paths of the shared objects the binary loads (its interpreter included);
    none for a static binary."""
    if Elf(binary).is_static:
        return []
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    paths = set()
    for line in out.splitlines():
        words = line.split()
        if "=>" in words and len(words) > 2 and words[2].startswith("/"):
            paths.add(words[2])  # libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x…)
        elif words and words[0].startswith("/"):
            paths.add(words[0])  # /lib64/ld-linux-x86-64.so.2 (0x…)
    return sorted(paths)


class MinimalRoot:
    """Runs a binary with bwrap in a root holding only libc, /bin/sh and the binary."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir

    def argv(self, *args: str) -> list[str]:
        cmd = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--ro-bind", str(BUSYBOX), "/bin/sh",
               "--ro-bind", str(self.binary), "/usr/local/bin/runtimeuse",
               "--bind", str(self.workdir), "/work",
               "--chdir", "/work", "--clearenv",
               "--setenv", "PATH", "/bin:/usr/local/bin", "--setenv", "HOME", "/tmp"]
        for applet in APPLETS:
            cmd += ["--symlink", "sh", f"/bin/{applet}"]
        for lib in needed_libraries(self.binary):
            cmd += ["--ro-bind", lib, lib]
        return cmd + ["/usr/local/bin/runtimeuse", *args]


class Runtime:
    """A started runtime; stopped (SIGTERM, then kill) by the fixture."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: Path | None = None):
        # stderr (logs) goes to a file: an undrained pipe could fill and stall the runtime.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, env=env, cwd=cwd, start_new_session=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        # Hang guard only (npx on a busy machine takes seconds): a runtime that never
        # becomes ready is killed, which ends the loop below.
        guard = threading.Timer(180, lambda: self.kill_group())
        guard.start()
        try:
            self._wait_ready()
        finally:
            guard.cancel()
        self.url = f"ws://127.0.0.1:{self.port}"

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        """Whether any process of the runtime's session (launchers, the binary) is left."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _wait_ready(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            match = READY.match(self.lines[-1])
            if match:
                self.port = int(match.group(1))
                break
        else:
            raise AssertionError(f"runtime exited before it was ready: {self.describe()}")

    def describe(self) -> str:
        self.proc.poll()
        self.stderr.seek(0)
        err = self.stderr.read()
        return f"exit={self.proc.returncode} stdout={self.lines} stderr={err[-2000:]}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        self.kill_group()


@pytest.fixture
def start():
    started: list[Runtime] = []

    def run(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> Runtime:
        runtime = Runtime(argv, env, cwd)
        started.append(runtime)
        return runtime

    yield run
    for runtime in started:
        runtime.cleanup()


@pytest.fixture
def file_server():
    """A loopback HTTP server for downloads: serve(path, bytes) -> URL."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(path: str, body: bytes) -> str:
        files[path] = body
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield serve
    server.shutdown()
    server.server_close()


def require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        pytest.fail(f"{tool} is not installed: run scripts/install-dist-tools")
    return found


