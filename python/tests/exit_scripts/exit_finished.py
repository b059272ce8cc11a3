# One query, then the interpreter exits (the report that started issue 12).
import asyncio
import os
from runtimeuse_client import QueryOptions, RuntimeUseClient


async def main():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])
    result = await client.query(prompt="ECHO:hi", options=QueryOptions(system_prompt="", model="m"))
    print(result.data.text)

asyncio.run(main())
