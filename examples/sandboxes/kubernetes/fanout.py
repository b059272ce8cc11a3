"""Fan one task out to N runtimes at once (the StatefulSet in runtime.yaml), one
connection each, from one Python process.

NOT RUN BY THE TESTS against a cluster (none here); the same fan-out against local
runtimes is what the Python package's benchmark measures with 200 runtimes.

    RUNTIMEUSE_TOKEN=... python fanout.py --replicas 8 "Run the test suite and report failures"
"""

import argparse
import asyncio
import os

from runtimeuse_client import QueryOptions, RuntimeUseClient


async def one(index: int, prompt: str, token: str) -> str:
    url = f"ws://runtimeuse-{index}.runtimeuse:8080/?token={token}"
    client = RuntimeUseClient(ws_url=url)
    result = await client.query(
        prompt=prompt,
        options=QueryOptions(system_prompt="You are a careful engineer.", model="claude-sonnet-4-5", timeout=1800),
    )
    return f"runtime {index}: {getattr(result.data, 'text', result.data)}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("prompt")
    parser.add_argument("--replicas", type=int, default=8)
    args = parser.parse_args()
    token = os.environ["RUNTIMEUSE_TOKEN"]
    outcomes = await asyncio.gather(
        *(one(i, args.prompt, token) for i in range(args.replicas)), return_exceptions=True
    )
    for outcome in outcomes:
        print(outcome)


asyncio.run(main())
