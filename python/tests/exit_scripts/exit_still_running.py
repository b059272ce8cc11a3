# asyncio.run returns while calls are still running: its cleanup cancels them, and the
# native side is still streaming output as the interpreter exits.
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
    seen = asyncio.Event()

    async def on_output(msg):
        seen.set()

    asyncio.ensure_future(client.execute_commands(
        [CommandInterface(command="seq 1 20000; sleep 30")],
        ExecuteCommandsOptions(on_command_output=on_output),
    ))
    asyncio.ensure_future(client.query(
        prompt="SLOW:30000", options=QueryOptions(system_prompt="", model="m")
    ))
    await asyncio.wait_for(seen.wait(), 30)

asyncio.run(main())
