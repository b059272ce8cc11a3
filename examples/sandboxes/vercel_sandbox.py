"""Vercel Sandbox: run Claude Code (or the OpenAI agent) in a Vercel Sandbox through runtimeuse.

NOT RUN BY THE TESTS: it needs a Vercel project (an OIDC token from `vercel env pull`)
and network access, which the project's test machines do not have. `local.py` is the same
shape and runs in the test suite. Vercel's node runtime has npm, so the runtime comes from
the npm package here (`npx -y runtimeuse-rs` works the same way).

    pip install vercel-sandbox runtimeuse-client
    vercel link && vercel env pull
    ANTHROPIC_API_KEY=... python examples/sandboxes/vercel_sandbox.py [claude|openai]
"""

import asyncio
import os
import secrets
import sys

from vercel.sandbox import AsyncSandbox as Sandbox

from _task import run_task

AGENT = sys.argv[1] if len(sys.argv) > 1 else "claude"
CREDENTIAL = {"claude": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[AGENT]
NPM_PACKAGE = os.environ.get("RUNTIMEUSE_NPM_PACKAGE", "runtimeuse-rs")


async def main() -> None:
    token = secrets.token_hex(16)
    async with await Sandbox.create(ports=[8080], runtime="node22", timeout=1_800_000) as sandbox:
        await sandbox.run_command("npm", ["install", "-g", NPM_PACKAGE] + (["@anthropic-ai/claude-code"] if AGENT == "claude" else []))
        await sandbox.run_command_detached(
            "runtimeuse",
            ["--agent", AGENT, "--port", "8080"],
            env={"RUNTIMEUSE_TOKEN": token, CREDENTIAL: os.environ[CREDENTIAL]},
        )
        await sandbox.run_command("sh", ["-c", "until curl -sf localhost:8080/health; do sleep 0.2; done"])
        ws_url = f"wss://{sandbox.domain(8080).removeprefix('https://')}/?token={token}"
        print(await run_task(ws_url, AGENT, "List the files in the working directory and summarise them."))


asyncio.run(main())
