# No asyncio.run: the loop is left open (never closed) with calls and a session in flight,
# and the interpreter exits with it.
import asyncio
import os
from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)


async def start():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])
    result = await client.query("ECHO:first", QueryOptions(system_prompt="", model="m"))
    assert result.data.text == "first"
    session_cm = client.session()
    session = await session_cm.__aenter__()  # never exited
    loop.create_task(session.query("SLOW:30000", QueryOptions(system_prompt="", model="m")))
    loop.create_task(client.execute_commands(
        [CommandInterface(command="seq 1 20000; sleep 30")], ExecuteCommandsOptions()
    ))
    await asyncio.sleep(0.2)

loop.run_until_complete(start())
print("leaving the loop open")
