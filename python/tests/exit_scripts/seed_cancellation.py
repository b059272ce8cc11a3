# The seed README's cancellation example, in a script (a SLOW: prompt, cancelled sooner).
import asyncio
import os
from runtimeuse_client import CancelledException, QueryOptions, RuntimeUseClient


async def cancel_after_delay(client, seconds):
    await asyncio.sleep(seconds)
    client.abort()


async def main():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])
    try:
        asyncio.create_task(cancel_after_delay(client, 0.2))
        result = await client.query(
            prompt="SLOW:30000",
            options=QueryOptions(
                system_prompt="You are a helpful assistant.",
                model="gpt-4.1",
            ),
        )
    except CancelledException:
        print("Run was cancelled")
    else:
        raise SystemExit(f"not cancelled: {result}")

asyncio.run(main())
