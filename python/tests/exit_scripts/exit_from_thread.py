# Calls made from other threads, each with its own loop: one finishes, one is still
# running in a daemon thread when the main thread exits.
import asyncio
import os
import threading
from runtimeuse_client import QueryOptions, RuntimeUseClient

URL = os.environ["RUNTIMEUSE_URL"]
OPTIONS = QueryOptions(system_prompt="", model="m")
running = threading.Event()


def finished():
    async def main():
        result = await RuntimeUseClient(ws_url=URL).query("ECHO:thread", OPTIONS)
        assert result.data.text == "thread"
    asyncio.run(main())


def still_running():
    async def main():
        client = RuntimeUseClient(ws_url=URL)
        task = asyncio.ensure_future(client.query("SLOW:30000", OPTIONS))
        await asyncio.sleep(0.1)
        running.set()
        await task
    asyncio.run(main())


t = threading.Thread(target=finished)
t.start()
t.join()
threading.Thread(target=still_running, daemon=True).start()
assert running.wait(30)
print("main thread exits")
