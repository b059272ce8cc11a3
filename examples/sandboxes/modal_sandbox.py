"""Modal: run Claude Code (or the OpenAI agent) in a Modal Sandbox through runtimeuse.

NOT RUN BY THE TESTS: it needs a Modal account and network access, which the project's
test machines do not have. `local.py` is the same shape and runs in the test suite.
(The file is not named modal.py so that it does not shadow the `modal` package.)

    pip install modal runtimeuse-client
    modal token new
    ANTHROPIC_API_KEY=... python examples/sandboxes/modal_sandbox.py [claude|openai]
"""

import asyncio
import os
import secrets
import sys

import modal

from _task import run_task

AGENT = sys.argv[1] if len(sys.argv) > 1 else "claude"
CREDENTIAL = {"claude": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[AGENT]


async def main() -> None:
    token = secrets.token_hex(16)
    image = modal.Image.debian_slim().pip_install("runtimeuse")
    if AGENT == "claude":
        image = image.apt_install("nodejs", "npm").run_commands("npm install -g @anthropic-ai/claude-code")
    app = modal.App.lookup("runtimeuse-recipe", create_if_missing=True)
    sandbox = modal.Sandbox.create(
        "runtimeuse", "--agent", AGENT, "--port", "8080",
        app=app,
        image=image,
        encrypted_ports=[8080],
        secrets=[modal.Secret.from_dict({"RUNTIMEUSE_TOKEN": token, CREDENTIAL: os.environ[CREDENTIAL]})],
        timeout=1800,
    )
    try:
        tunnel = sandbox.tunnels()[8080]
        ws_url = tunnel.url.replace("https://", "wss://") + f"/?token={token}"
        print(await run_task(ws_url, AGENT, "List the files in the working directory and summarise them."))
    finally:
        sandbox.terminate()


asyncio.run(main())
