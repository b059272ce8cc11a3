"""Client-side timeouts, idle timeouts kept alive by heartbeats, and abort()."""

import asyncio
import time

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CancelledException,
    CommandInterface,
    RuntimeUseClient,
)

from _support import exec_options, pid_is_gone, query_options


async def abort_after(target, seconds: float) -> None:
    await asyncio.sleep(seconds)
    target.abort()


async def test_query_timeout_raises_timeout_error_and_runtime_stays_healthy(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.query(prompt="SLOW:20000", options=query_options(timeout=0.5))
    assert time.monotonic() - started < 10

    fresh = RuntimeUseClient(ws_url=runtime.url)
    result = await fresh.query(prompt="ECHO:still alive", options=query_options(timeout=10))
    assert result.data.text == "still alive"


async def test_heartbeats_keep_idle_timeout_from_firing(runtime):
    # The runtime sends a heartbeat every 0.2 s; a 1.5 s request outlives idle_timeout=1.0.
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(prompt="SLOW:1500", options=query_options(idle_timeout=1.0))
    assert result.data.text == "done"


async def test_idle_timeout_fires_when_heartbeats_are_slower(start_runtime):
    # Control for the test above: with 30 s heartbeats the same request goes idle.
    rt = start_runtime("--heartbeat-interval", "30", "--artifact-grace", "0.3")
    client = RuntimeUseClient(ws_url=rt.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt="SLOW:1500", options=query_options(idle_timeout=0.5))
    assert info.value.metadata["timeout_type"] == "idle_timeout"


async def test_abort_cancels_slow_query_quickly(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    started = time.monotonic()
    aborter = asyncio.create_task(abort_after(client, 0.3))
    with pytest.raises(CancelledException):
        await client.query(prompt="SLOW:10000", options=query_options())
    await aborter
    assert time.monotonic() - started < 6


async def test_abort_in_session_then_next_call_on_same_session_succeeds(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        started = time.monotonic()
        aborter = asyncio.create_task(abort_after(session, 0.3))
        with pytest.raises(CancelledException):
            await session.query(prompt="SLOW:10000", options=query_options())
        await aborter
        assert time.monotonic() - started < 6

        result = await session.query(prompt="ECHO:after abort", options=query_options())
        assert result.data.text == "after abort"

        commands = await session.execute_commands(
            commands=[CommandInterface(command="echo still here")], options=exec_options()
        )
        assert [r.exit_code for r in commands.results] == [0]


async def test_abort_kills_running_command_process(runtime, tmp_path):
    pid_file = tmp_path / "pid"
    client = RuntimeUseClient(ws_url=runtime.url)
    started = time.monotonic()
    aborter = asyncio.create_task(abort_after(client, 0.5))
    with pytest.raises(CancelledException):
        await client.execute_commands(
            commands=[CommandInterface(command=f"sleep 30 & echo $! > {pid_file}; wait")],
            options=exec_options(),
        )
    await aborter
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while not pid_is_gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pid_is_gone(pid), f"grandchild sleep (pid {pid}) survived the cancel"
