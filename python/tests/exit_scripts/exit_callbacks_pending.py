# The interpreter exits while callbacks are still running or queued: an assistant-message
# callback that never returns, an upload callback waiting, output callbacks behind.
import asyncio
import os
import tempfile
from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)


async def main():
    url = os.environ["RUNTIMEUSE_URL"]
    started = asyncio.Event()

    async def stuck(msg):
        started.set()
        await asyncio.sleep(3600)

    asyncio.ensure_future(RuntimeUseClient(ws_url=url).query(
        "STREAM:50", QueryOptions(system_prompt="", model="m", on_assistant_message=stuck)
    ))

    async def slow_upload(request):
        started.set()
        await asyncio.sleep(3600)

    art = tempfile.mkdtemp()
    asyncio.ensure_future(RuntimeUseClient(ws_url=url).query(
        f"WRITE_FILE:{art}/a.txt hello",
        QueryOptions(system_prompt="", model="m", artifacts_dirs=[art],
                     on_artifact_upload_request=slow_upload),
    ))

    async def slow_output(msg):
        await asyncio.sleep(0.01)

    asyncio.ensure_future(RuntimeUseClient(ws_url=url).execute_commands(
        [CommandInterface(command="seq 1 5000; sleep 30")],
        ExecuteCommandsOptions(on_command_output=slow_output),
    ))
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.sleep(0.05)

asyncio.run(main())
