"""abort(), the overall and idle timeouts, failing and slow callbacks."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    ArtifactUploadResult,
    CancelledException,
    CommandInterface,
    RuntimeUseClient,
)

from _support import exec_options, pid_is_gone, query_options


async def abort_after(target, seconds: float) -> None:
    await asyncio.sleep(seconds)
    target.abort()


async def wait_for_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the command did not start"
        await asyncio.sleep(0.02)
    return int(pid_file.read_text())


async def assert_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while not pid_is_gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pid_is_gone(pid), f"pid {pid} survived"


def sleeper(pid_file: Path) -> CommandInterface:
    # "started" is printed once the pid is on disk.
    return CommandInterface(command=f"sleep 30 & echo $! > {pid_file}; echo started; wait")


# --------------------------------------------------------------------------- abort


async def test_client_abort_cancels_and_kills_the_command(client, tmp_path):
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    aborter = asyncio.create_task(abort_after(client, 0.5))
    with pytest.raises(CancelledException, match="Command execution was cancelled"):
        await client.execute_commands(commands=[sleeper(pid_file)], options=exec_options())
    await aborter
    assert time.monotonic() - started < 4
    await assert_gone(int(pid_file.read_text()))


async def test_abort_with_nothing_in_flight_changes_nothing(client):
    client.abort()
    result = await client.query(prompt="ECHO:after a stray abort", options=query_options())
    assert result.data.text == "after a stray abort"


async def test_abort_from_inside_a_callback(client):
    seen = []

    async def on_assistant(msg):
        seen.append(msg.text_blocks)
        client.abort()

    with pytest.raises(CancelledException, match="Query was cancelled"):
        await client.query(prompt="STREAM:50", options=query_options(on_assistant_message=on_assistant))
    # Callbacks stop once the call is aborted.
    assert len(seen) < 50


async def test_session_abort_then_the_session_goes_on(client, tmp_path):
    pid_file = tmp_path / "pid"
    async with client.session() as session:
        aborter = asyncio.create_task(abort_after(session, 0.4))
        with pytest.raises(CancelledException):
            await session.execute_commands(commands=[sleeper(pid_file)], options=exec_options())
        await aborter
        await assert_gone(int(pid_file.read_text()))

        aborter = asyncio.create_task(abort_after(session, 0.3))
        started = time.monotonic()
        with pytest.raises(CancelledException, match="Query was cancelled"):
            await session.query(prompt="SLOW:10000", options=query_options())
        assert time.monotonic() - started < 6
        await aborter

        result = await session.query(prompt="ECHO:next", options=query_options())
        assert result.data.text == "next"


async def test_cancelling_the_task_stops_the_command(client, tmp_path):
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        client.execute_commands(commands=[sleeper(pid_file)], options=exec_options())
    )
    pid = await wait_for_pid(pid_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_gone(pid)


# --------------------------------------------------------------------------- timeouts


async def test_overall_timeout_raises_timeout_error(client, runtime):
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.query(prompt="SLOW:10000", options=query_options(timeout=0.4))
    assert time.monotonic() - started < 6
    again = await RuntimeUseClient(ws_url=runtime.url).query(prompt="ECHO:alive", options=query_options())
    assert again.data.text == "alive"


async def test_overall_timeout_also_covers_a_slow_callback(client):
    async def stuck(msg):
        await asyncio.sleep(60)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.query(prompt="STREAM:1", options=query_options(timeout=0.5, on_assistant_message=stuck))
    assert time.monotonic() - started < 10


async def test_timeout_in_a_session_leaves_it_usable(client, tmp_path):
    pid_file = tmp_path / "pid"
    async with client.session() as session:
        with pytest.raises(TimeoutError):
            await session.execute_commands(commands=[sleeper(pid_file)], options=exec_options(timeout=0.5))
        await assert_gone(await wait_for_pid(pid_file))
        result = await session.query(prompt="ECHO:recovered", options=query_options())
    assert result.data.text == "recovered"


async def test_idle_timeout_raises_agent_runtime_error(start_runtime):
    rt = start_runtime("--heartbeat-interval", "30")
    client = RuntimeUseClient(ws_url=rt.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt="SLOW:3000", options=query_options(idle_timeout=0.4))
    assert info.value.error == "No message received from agent runtime for 0.4s"
    assert info.value.metadata == {
        "timeout_type": "idle_timeout",
        "idle_timeout": 0.4,
        "last_message_type": None,
        "message_count": 0,
        "phase": "waiting_for_message",
    }


async def test_heartbeats_keep_the_idle_timeout_from_firing(client):
    result = await client.query(prompt="SLOW:1200", options=query_options(idle_timeout=0.8))
    assert result.data.text == "done"


async def test_idle_timeout_does_not_count_time_spent_in_callbacks(start_runtime):
    # As in the published client, the limit is on waiting for the next message: the
    # runtime is silent for 1.6 s, but 1 s of it is spent in the output callback.
    rt = start_runtime("--heartbeat-interval", "30")
    seen = []

    async def slow(msg):
        seen.append(msg.text)
        await asyncio.sleep(1)

    result = await RuntimeUseClient(ws_url=rt.url).execute_commands(
        commands=[CommandInterface(command="echo hi; sleep 1.6; echo bye")],
        options=exec_options(on_command_output=slow, idle_timeout=1.2),
    )
    assert result.results[0].stdout == "hi\nbye\n"
    assert "".join(seen) == "hi\nbye\n"


async def test_idle_timeout_in_a_session_leaves_it_usable(start_runtime):
    rt = start_runtime("--heartbeat-interval", "30")
    async with RuntimeUseClient(ws_url=rt.url).session() as session:
        with pytest.raises(AgentRuntimeError, match="No message received"):
            await session.query(prompt="SLOW:3000", options=query_options(idle_timeout=0.3))
        result = await session.query(prompt="ECHO:after idle", options=query_options())
    assert result.data.text == "after idle"


# --------------------------------------------------------------------------- callbacks


class Boom(Exception):
    pass


async def test_exception_in_assistant_callback_propagates(client):
    async def explode(msg):
        raise Boom("from the callback")

    with pytest.raises(Boom, match="from the callback"):
        await client.query(prompt="STREAM:3", options=query_options(on_assistant_message=explode))


async def test_exception_in_output_callback_stops_the_command(client, tmp_path):
    pid_file = tmp_path / "pid"

    async def explode(msg):
        raise Boom(msg.text)

    started = time.monotonic()
    with pytest.raises(Boom, match="started"):
        await client.execute_commands(commands=[sleeper(pid_file)],
                                      options=exec_options(on_command_output=explode))
    assert time.monotonic() - started < 4
    await assert_gone(await wait_for_pid(pid_file))


async def test_exception_in_session_callback_cancels_and_the_session_goes_on(client, tmp_path):
    pid_file = tmp_path / "pid"

    async def explode(msg):
        raise Boom("no")

    async with client.session() as session:
        with pytest.raises(Boom):
            await session.execute_commands(commands=[sleeper(pid_file)],
                                           options=exec_options(on_command_output=explode))
        await assert_gone(await wait_for_pid(pid_file))
        result = await session.query(prompt="ECHO:fine", options=query_options())
    assert result.data.text == "fine"


async def test_exception_in_artifact_callback_propagates(client, tmp_path):
    async def explode(req):
        raise Boom(req.filename)

    adir = tmp_path / "a"
    with pytest.raises(Boom, match="x.txt"):
        await client.query(
            prompt=f"WRITE_FILE:{adir}/x.txt data",
            options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=explode),
        )


async def test_assistant_callback_timeout(client):
    async def slow(msg):
        await asyncio.sleep(5)

    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt="STREAM:2",
            options=query_options(on_assistant_message=slow, assistant_callback_timeout=0.2),
        )
    assert info.value.error == "on_assistant_message callback timed out"
    metadata = dict(info.value.metadata)
    assert metadata.pop("message_count") >= 1  # heartbeats count too
    assert metadata == {
        "timeout_type": "assistant_callback_timeout",
        "timeout": 0.2,
        "last_message_type": "assistant_message",
        "phase": "assistant_callback",
    }


async def test_artifact_callback_timeout(client, tmp_path):
    async def slow(req):
        await asyncio.sleep(5)
        return ArtifactUploadResult(presigned_url="http://127.0.0.1:9/x", content_type="x/y")

    adir = tmp_path / "a"
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt=f"WRITE_FILE:{adir}/slow.txt data",
            options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=slow,
                                  artifact_upload_callback_timeout=0.2),
        )
    assert info.value.error == "on_artifact_upload_request callback timed out"
    assert info.value.metadata == {
        "timeout_type": "artifact_upload_callback_timeout",
        "timeout": 0.2,
        "filename": "slow.txt",
        "filepath": str((adir / "slow.txt").resolve()),
    }


async def test_callbacks_within_their_limits_are_fine(client):
    seen = []

    async def quick(msg):
        await asyncio.sleep(0.01)
        seen.append(msg.text_blocks[0])

    await client.query(prompt="STREAM:3",
                       options=query_options(on_assistant_message=quick, assistant_callback_timeout=2))
    assert seen == ["message 1 of 3", "message 2 of 3", "message 3 of 3"]
