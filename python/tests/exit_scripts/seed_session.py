# A session (the seed API's persistent connection): a few calls, then a clean close.
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
    async with client.session() as session:
        for i in range(3):
            result = await session.query(
                prompt=f"ECHO:{i}", options=QueryOptions(system_prompt="", model="m")
            )
            assert result.data.text == str(i)
        done = await session.execute_commands(
            [CommandInterface(command="echo hi")], ExecuteCommandsOptions()
        )
        assert done.results[0].stdout == "hi\n", done

asyncio.run(main())
