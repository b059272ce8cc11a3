"""E2B: run Claude Code (or the OpenAI agent) in an E2B sandbox through runtimeuse.

NOT RUN BY THE TESTS: it needs an E2B account and network access, which the project's
test machines do not have. `local.py` is the same shape and runs in the test suite.

    pip install e2b runtimeuse-client
    E2B_API_KEY=... ANTHROPIC_API_KEY=... python examples/sandboxes/e2b.py [claude|openai]
"""

import asyncio
import os
import secrets
import sys

from e2b import Sandbox

from _task import run_task

AGENT = sys.argv[1] if len(sys.argv) > 1 else "claude"
CREDENTIAL = {"claude": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[AGENT]


async def main() -> None:
    token = secrets.token_hex(16)
    sandbox = Sandbox.create(timeout=1800)
    try:
        setup = "pip install -q runtimeuse"
        if AGENT == "claude":
            setup += " && npm install -g @anthropic-ai/claude-code"
        sandbox.commands.run(setup, timeout=600)
        sandbox.commands.run(
            f"runtimeuse --agent {AGENT} --port 8080",
            background=True,
            envs={"RUNTIMEUSE_TOKEN": token, CREDENTIAL: os.environ[CREDENTIAL]},
        )
        # The readiness line on stdout is "RuntimeUse server listening on port 8080";
        # polling /health works as well. E2B forwards the port over TLS.
        sandbox.commands.run("until curl -sf localhost:8080/health; do sleep 0.2; done", timeout=60)
        ws_url = f"wss://{sandbox.get_host(8080)}/?token={token}"
        print(await run_task(ws_url, AGENT, "List the files in the working directory and summarise them."))
    finally:
        sandbox.kill()


asyncio.run(main())
