# The seed README's command-only execution, in a script (paths under a temporary WORKDIR).
import asyncio
import os
from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    RuntimeUseClient,
)

APP = os.environ["WORKDIR"]


async def on_command_output(msg):
    print(f"[{msg.stream}] {msg.text}", end="")


async def main():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])

    result = await client.execute_commands(
        commands=[
            CommandInterface(command=f"mkdir -p {APP}/output"),
            CommandInterface(command=f"echo 'sandbox is ready' > {APP}/output/status.txt"),
            CommandInterface(command=f"cat {APP}/output/status.txt", env={"MY_VAR": "value"}),
        ],
        options=ExecuteCommandsOptions(
            on_command_output=on_command_output,  # optional -- streams stdout/stderr
        ),
    )

    for item in result.results:
        print(f"{item.command} -> exit code {item.exit_code}")
    assert [item.exit_code for item in result.results] == [0, 0, 0]

asyncio.run(main())
