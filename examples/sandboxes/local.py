"""A local "sandbox": a temp dir and the installed ``runtimeuse`` wheel, driven like the
cloud recipes. This is the one recipe the test suite runs for real.

    pip install runtimeuse runtimeuse-client
    python examples/sandboxes/local.py            # echo agent
    python examples/sandboxes/local.py --agent claude   # needs claude + ANTHROPIC_API_KEY

It starts ``runtimeuse`` from PATH (the wheel's console script) in a fresh directory,
waits for the readiness line that sandbox scripts wait for, runs the shared task, and
stops the runtime with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _task import run_task  # noqa: E402

READY = re.compile(r"RuntimeUse server listening on port (\d+)")


def start_runtime(binary: str, agent: str, workdir: str, token: str) -> tuple[subprocess.Popen, int]:
    """Starts the runtime on a free loopback port; returns it and its port."""
    env = dict(os.environ, RUNTIMEUSE_TOKEN=token)
    proc = subprocess.Popen(
        [binary, "--agent", agent, "--host", "127.0.0.1", "--port", "0"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            return proc, int(match.group(1))
    raise RuntimeError(f"runtime exited before it was ready (exit {proc.wait()})")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="echo", choices=["echo", "openai", "claude"])
    parser.add_argument("--prompt", default="ECHO:hello from a local sandbox")
    parser.add_argument("--runtime", default=shutil.which("runtimeuse"), help="path of the runtimeuse binary")
    args = parser.parse_args()
    if not args.runtime:
        print("runtimeuse is not on PATH: pip install runtimeuse", file=sys.stderr)
        return 2
    token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="sandbox-") as workdir:
        proc, port = start_runtime(args.runtime, args.agent, workdir, token)
        try:
            text = await run_task(f"ws://127.0.0.1:{port}/?token={token}", args.agent, args.prompt)
            print(f"result: {text}")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
        if code != 0:
            print(f"runtime exited with {code}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
