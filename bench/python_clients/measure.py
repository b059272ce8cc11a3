"""One side of the Python client benchmark: measures whichever ``runtimeuse_client`` this
interpreter imports (ours, over the Rust client, or the published pure-Python one)
against a running runtime, and prints the figures as one JSON object on stdout.

Run by compare.py, once per client per round; not meant to be run by hand, but it can be:
    python measure.py ws://127.0.0.1:PORT [figure ...]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)

SESSION_CALLS = 400
ONESHOT_CALLS = 150
EXEC_CALLS = 60
STREAM_MESSAGES = 20_000
CPU_MESSAGES = 100_000
OUTPUT_BYTES = 64 * 1024 * 1024
WARMUP = 20


def options(**kw) -> QueryOptions:
    return QueryOptions(system_prompt="", model="echo", **kw)


def summary(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "median_ms": statistics.median(samples) * 1e3,
        "p90_ms": samples[int(len(samples) * 0.9)] * 1e3,
        "n": len(samples),
    }


async def session_round_trip(url: str) -> dict:
    client = RuntimeUseClient(ws_url=url)
    async with client.session() as session:
        for _ in range(WARMUP):
            await session.query("ECHO:x", options())
        samples = []
        for _ in range(SESSION_CALLS):
            start = time.perf_counter()
            result = await session.query("ECHO:x", options())
            samples.append(time.perf_counter() - start)
            assert result.data.text == "x"
    return summary(samples)


async def oneshot_query(url: str) -> dict:
    client = RuntimeUseClient(ws_url=url)
    for _ in range(WARMUP):
        await client.query("ECHO:x", options())
    samples = []
    for _ in range(ONESHOT_CALLS):
        start = time.perf_counter()
        result = await client.query("ECHO:x", options())
        samples.append(time.perf_counter() - start)
        assert result.data.text == "x"
    return summary(samples)


async def execute_true(url: str) -> dict:
    client = RuntimeUseClient(ws_url=url)
    commands = [CommandInterface(command="true")]
    async with client.session() as session:
        for _ in range(5):
            await session.execute_commands(commands, ExecuteCommandsOptions())
        samples = []
        for _ in range(EXEC_CALLS):
            start = time.perf_counter()
            result = await session.execute_commands(commands, ExecuteCommandsOptions())
            samples.append(time.perf_counter() - start)
            assert result.results[0].exit_code == 0
    return summary(samples)


async def stream(url: str, count: int) -> tuple[float, float]:
    """Wall and process CPU seconds of a STREAM:count query into an async callback."""
    seen = 0

    async def on_assistant(message) -> None:
        nonlocal seen
        seen += len(message.text_blocks)

    client = RuntimeUseClient(ws_url=url)
    cpu, wall = time.process_time(), time.perf_counter()
    result = await client.query(f"STREAM:{count}", options(on_assistant_message=on_assistant))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert seen == count, (seen, count)
    assert result.data.text == f"streamed {count} messages"
    return wall, cpu


async def assistant_rate(url: str) -> dict:
    await stream(url, 500)
    wall, _ = await stream(url, STREAM_MESSAGES)
    return {"messages_per_s": STREAM_MESSAGES / wall}


async def cpu_per_100k(url: str) -> dict:
    wall, cpu = await stream(url, CPU_MESSAGES)
    return {"cpu_s": cpu * 100_000 / CPU_MESSAGES, "wall_s": wall}


async def output_rate(url: str) -> dict:
    received = 0

    async def on_output(message) -> None:
        nonlocal received
        received += len(message.text)

    client = RuntimeUseClient(ws_url=url)
    command = CommandInterface(command=f"head -c {OUTPUT_BYTES} /dev/zero | tr '\\0' a")
    cpu, wall = time.process_time(), time.perf_counter()
    await client.execute_commands([command], ExecuteCommandsOptions(on_command_output=on_output))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert received == OUTPUT_BYTES, (received, OUTPUT_BYTES)
    return {"mib_per_s": OUTPUT_BYTES / wall / 2**20, "cpu_s": cpu}


FIGURES = {
    "session_round_trip": session_round_trip,
    "oneshot_query": oneshot_query,
    "execute_true": execute_true,
    "assistant_rate": assistant_rate,
    "output_rate": output_rate,
    "cpu_per_100k": cpu_per_100k,
}


async def main(url: str, names: list[str]) -> None:
    report = {}
    for name in names or FIGURES:
        report[name] = await FIGURES[name](url)
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
