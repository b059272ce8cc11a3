# Many calls streaming at once when main() returns; the native side is at its busiest.
import asyncio
import os
from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)


async def main():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])
    got = asyncio.Event()

    async def on_output(msg):
        got.set()

    for _ in range(10):
        asyncio.ensure_future(client.execute_commands(
            [CommandInterface(command="seq 1 20000")],
            ExecuteCommandsOptions(on_command_output=on_output),
        ))
        asyncio.ensure_future(client.query("STREAM:200", QueryOptions(system_prompt="", model="m")))
    await asyncio.wait_for(got.wait(), 30)

asyncio.run(main())
