"""One side of the fleet benchmark: this interpreter's ``runtimeuse_client`` drives every
runtime listed on stdin (one ws:// URL a line) at once from one event loop, and prints one
JSON object: wall and CPU time, peak RSS, and the event loop's worst stall.

Each runtime gets its own session (its own connection) running QUERIES queries, all
sessions at the same time, plus one one-shot execute_commands(["true"]) per runtime.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)

QUERIES = 20
TICK_S = 0.005


async def drive(url: str) -> None:
    client = RuntimeUseClient(ws_url=url)
    options = QueryOptions(system_prompt="", model="echo")
    async with client.session() as session:
        for i in range(QUERIES):
            result = await session.query(f"ECHO:{i}", options)
            assert result.data.text == str(i)
    done = await client.execute_commands([CommandInterface(command="true")], ExecuteCommandsOptions())
    assert done.results[0].exit_code == 0


async def main(urls: list[str]) -> None:
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            lags.append(time.perf_counter() - start - TICK_S)

    tick = asyncio.ensure_future(ticker())
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(drive(url) for url in urls))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stop.set()
    await tick
    print(json.dumps({
        "runtimes": len(urls),
        "calls": len(urls) * (QUERIES + 1),
        "wall_s": wall,
        "cpu_s": cpu,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worst_loop_stall_ms": max(lags) * 1e3,
        "p99_loop_stall_ms": sorted(lags)[int(len(lags) * 0.99)] * 1e3,
        "median_loop_stall_ms": sorted(lags)[len(lags) // 2] * 1e3,
    }))


if __name__ == "__main__":
    asyncio.run(main(sys.stdin.read().split()))
