"""Persistent sessions: one connection for many calls, late artifacts drained at close."""

from __future__ import annotations

import asyncio

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CommandInterface,
    RuntimeUseClient,
    RuntimeUseSession,
)

from _support import ArtifactHandler, exec_options, http_get_json, query_options, real, upload_path


async def open_sessions(rt) -> int:
    _, body = await asyncio.to_thread(http_get_json, rt.http_url + "/health")
    return body["sessions"]


async def test_many_calls_share_one_connection(start_runtime):
    rt = start_runtime()
    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        assert isinstance(session, RuntimeUseSession)
        first = await session.query(prompt="ECHO:one", options=query_options())
        second = await session.query(prompt="STREAM:2", options=query_options())
        listed = await session.execute_commands(
            commands=[CommandInterface(command="echo three")], options=exec_options()
        )
        assert await open_sessions(rt) == 1
    assert (first.data.text, second.data.text) == ("one", "streamed 2 messages")
    assert listed.results[0].stdout == "three\n"
    for _ in range(50):  # the runtime forgets the session once the socket is closed
        if await open_sessions(rt) == 0:
            break
        await asyncio.sleep(0.05)
    assert await open_sessions(rt) == 0


async def test_concurrent_calls_on_a_session_take_turns(client):
    async with client.session() as session:
        results = await asyncio.gather(
            session.query(prompt="SLOW:300", options=query_options()),
            session.query(prompt="ECHO:second", options=query_options()),
            session.execute_commands(commands=[CommandInterface(command="echo third")],
                                     options=exec_options()),
        )
    assert results[0].data.text == "done"
    assert results[1].data.text == "second"
    assert results[2].results[0].stdout == "third\n"


async def test_error_and_check_failure_do_not_poison_the_session(client):
    async with client.session() as session:
        with pytest.raises(AgentRuntimeError):
            await session.query(prompt="ERROR:first", options=query_options())
        with pytest.raises(AgentRuntimeError):
            await session.execute_commands(commands=[CommandInterface(command="exit 1")],
                                           options=exec_options(check=True))
        result = await session.query(prompt="ECHO:still fine", options=query_options())
    assert result.data.text == "still fine"


async def test_late_artifact_is_answered_while_the_session_closes(start_runtime, http_server, tmp_path):
    rt = start_runtime("--heartbeat-interval", "0.2", "--artifact-grace", "1.5")
    adir = tmp_path / "late"
    late = adir / "late.txt"
    handler = ArtifactHandler(http_server, "text/plain")
    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        result = await session.execute_commands(
            commands=[CommandInterface(command=f"(sleep 0.5; echo late > {late}) >/dev/null 2>&1 &")],
            options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
        )
        assert result.results[0].exit_code == 0
        assert not late.exists()
    # The runtime confirms the end of the session only after the upload.
    assert handler.filepaths() == [real(late)]
    assert [(p.path, p.body) for p in http_server.puts] == [(upload_path(real(late)), b"late\n")]


async def test_late_artifact_uses_the_most_recent_callback(start_runtime, http_server, tmp_path):
    rt = start_runtime("--heartbeat-interval", "0.2", "--artifact-grace", "1.5")
    adir = tmp_path / "dir"
    first = ArtifactHandler(http_server, "application/x-first")
    second = ArtifactHandler(http_server, "application/x-second")
    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        await session.query(prompt="ECHO:a", options=query_options(
            artifacts_dirs=[str(adir)], on_artifact_upload_request=first))
        await session.execute_commands(
            commands=[CommandInterface(command=f"(sleep 0.4; echo x > {adir}/x.txt) >/dev/null 2>&1 &")],
            options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=second),
        )
        # A call without an upload callback keeps the previous one for the close.
        await session.query(prompt="ECHO:b", options=query_options())
    assert first.requests == []
    assert second.filepaths() == [real(adir / "x.txt")]
    assert http_server.puts[0].content_type == "application/x-second"


async def test_failing_late_artifact_callback_does_not_break_the_close(start_runtime, tmp_path):
    rt = start_runtime("--heartbeat-interval", "0.2", "--artifact-grace", "1.0",
                       "--artifact-handshake-timeout", "1")
    adir = tmp_path / "dir"

    async def broken(request):
        raise RuntimeError("storage is down")

    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        await session.execute_commands(
            commands=[CommandInterface(command=f"(sleep 0.3; echo x > {adir}/x.txt) >/dev/null 2>&1 &")],
            options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=broken),
        )
        started = asyncio.get_running_loop().time()
    # Closing returned once the runtime gave up on the unanswered upload.
    assert asyncio.get_running_loop().time() - started < 10


async def test_calls_after_the_session_closed_fail(client):
    async with client.session() as session:
        await session.query(prompt="ECHO:x", options=query_options())
    with pytest.raises(AgentRuntimeError, match="No result message received"):
        await session.query(prompt="ECHO:too late", options=query_options())
