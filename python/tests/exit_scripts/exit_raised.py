# Calls that raised: one caught, one left unretrieved in a task, one escaping main().
import asyncio
import os
import sys
from runtimeuse_client import AgentRuntimeError, QueryOptions, RuntimeUseClient

OPTIONS = QueryOptions(system_prompt="", model="m")


async def main():
    client = RuntimeUseClient(ws_url=os.environ["RUNTIMEUSE_URL"])
    try:
        await client.query("ERROR:boom", OPTIONS)
    except AgentRuntimeError:
        pass
    # Never awaited: "Task exception was never retrieved" at exit.
    asyncio.ensure_future(client.query("ERROR:unretrieved", OPTIONS))
    refused = RuntimeUseClient(ws_url="ws://127.0.0.1:1")
    asyncio.ensure_future(refused.query("ECHO:x", OPTIONS))
    await asyncio.sleep(0.2)
    await client.query("ERROR:escapes", OPTIONS)

try:
    asyncio.run(main())
except AgentRuntimeError as e:
    print(f"raised as expected: {e.error}")
    sys.exit(0)
sys.exit("main() did not raise")
