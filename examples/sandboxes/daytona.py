"""Daytona: run Claude Code (or the OpenAI agent) in a Daytona sandbox through runtimeuse.

NOT RUN BY THE TESTS: it needs a Daytona account and network access, which the project's
test machines do not have. `local.py` is the same shape and runs in the test suite.

    pip install daytona runtimeuse-client
    DAYTONA_API_KEY=... ANTHROPIC_API_KEY=... python examples/sandboxes/daytona.py [claude|openai]
"""

import asyncio
import os
import secrets
import sys

from daytona import CreateSandboxFromSnapshotParams, Daytona, SessionExecuteRequest

from _task import run_task

AGENT = sys.argv[1] if len(sys.argv) > 1 else "claude"
CREDENTIAL = {"claude": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[AGENT]


async def main() -> None:
    token = secrets.token_hex(16)
    daytona = Daytona()
    # public=True lets the preview URL through without Daytona's own preview token;
    # the runtime's token still guards the WebSocket.
    sandbox = daytona.create(CreateSandboxFromSnapshotParams(public=True))
    try:
        setup = "pip install -q runtimeuse"
        if AGENT == "claude":
            setup += " && npm install -g @anthropic-ai/claude-code"
        sandbox.process.exec(setup, timeout=600)
        sandbox.process.create_session("runtime")
        sandbox.process.execute_session_command(
            "runtime",
            SessionExecuteRequest(
                command=f"RUNTIMEUSE_TOKEN={token} {CREDENTIAL}={os.environ[CREDENTIAL]} "
                f"runtimeuse --agent {AGENT} --port 8080",
                run_async=True,
            ),
        )
        sandbox.process.exec("until curl -sf localhost:8080/health; do sleep 0.2; done", timeout=60)
        preview = sandbox.get_preview_link(8080)
        ws_url = preview.url.replace("https://", "wss://") + f"/?token={token}"
        print(await run_task(ws_url, AGENT, "List the files in the working directory and summarise them."))
    finally:
        daytona.delete(sandbox)


asyncio.run(main())
