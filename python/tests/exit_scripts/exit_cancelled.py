# Calls cancelled three ways (task.cancel, a timeout, abort) just before exit.
import asyncio
import os
from runtimeuse_client import CancelledException, QueryOptions, RuntimeUseClient

OPTIONS = QueryOptions(system_prompt="", model="m")


async def main():
    url = os.environ["RUNTIMEUSE_URL"]
    task = asyncio.ensure_future(RuntimeUseClient(ws_url=url).query("SLOW:30000", OPTIONS))
    await asyncio.sleep(0.1)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    try:
        await asyncio.wait_for(RuntimeUseClient(ws_url=url).query("SLOW:30000", OPTIONS), 0.1)
    except asyncio.TimeoutError:
        pass
    client = RuntimeUseClient(ws_url=url)
    asyncio.get_running_loop().call_later(0.1, client.abort)
    try:
        await client.query("SLOW:30000", OPTIONS)
    except CancelledException:
        pass

asyncio.run(main())
