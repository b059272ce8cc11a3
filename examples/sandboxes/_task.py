"""The task every recipe runs once its sandbox is up: one agent query and one command list.

Works with either client: the published ``runtimeuse-client`` or our package of the same
name and API. Every recipe hands it a ``ws_url`` (with ``?token=`` when the runtime has one).
"""

from __future__ import annotations

import os

from runtimeuse_client import (
    AssistantMessageInterface,
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
    TextResult,
)


def agent_model(agent: str) -> str:
    """A model name that suits the agent the runtime was started with."""
    if agent == "claude":
        return os.environ.get("CLAUDE_MODEL", "claude-sonnet-4-5")
    if agent == "openai":
        return os.environ.get("OPENAI_MODEL", "gpt-4.1")
    return "echo"


async def run_task(ws_url: str, agent: str, prompt: str) -> str:
    """Runs ``prompt`` through the runtime at ``ws_url``, then a short command list.

    Returns the agent's text answer. Assistant messages are printed as they stream.
    """

    async def on_assistant(message: AssistantMessageInterface) -> None:
        for block in message.text_blocks:
            print(f"[assistant] {block}")

    client = RuntimeUseClient(ws_url=ws_url)
    result = await client.query(
        prompt=prompt,
        options=QueryOptions(
            system_prompt="You are a careful engineer working inside a sandbox.",
            model=agent_model(agent),
            on_assistant_message=on_assistant,
            timeout=600,
        ),
    )
    assert isinstance(result.data, TextResult), result.data
    commands = await client.execute_commands(
        commands=[CommandInterface(command="uname -a"), CommandInterface(command="ls -la")],
        options=ExecuteCommandsOptions(timeout=60),
    )
    for item in commands.results:
        print(f"$ {item.command}  (exit {item.exit_code})\n{item.stdout or ''}")
    return result.data.text
