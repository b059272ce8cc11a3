"""``RuntimeUseClient(resume=True)``: durable sessions that survive a cut connection,
through the public API, against the real runtime behind a cutting proxy."""

from __future__ import annotations

import time

import pytest
from runtimeuse_client import AgentRuntimeError, CommandInterface, RuntimeUseClient

from _cut_proxy import CutProxy
from _support import exec_options, query_options


@pytest.fixture
async def proxy(runtime):
    proxy = await CutProxy(runtime.port).start()
    yield proxy
    await proxy.close()


async def test_a_streaming_query_survives_cuts(proxy):
    count = 2000
    seen: list[str] = []

    async def on_message(message) -> None:
        seen.extend(message.text_blocks)
        if len(seen) in (300, 1200):
            proxy.cut()

    client = RuntimeUseClient(ws_url=proxy.url, resume=True)
    result = await client.query(
        prompt=f"STREAM:{count}",
        options=query_options(on_assistant_message=on_message, timeout=120),
    )

    assert result.data.text == f"streamed {count} messages"
    assert seen == [f"message {i} of {count}" for i in range(1, count + 1)]
    assert result.metadata["reconnects"] == 2
    assert proxy.cuts == 2


async def test_command_output_is_exact_across_a_cut(proxy):
    chunks: list[str] = []

    async def on_output(output) -> None:
        chunks.append(output.text)
        if len(chunks) == 3:
            proxy.cut()

    client = RuntimeUseClient(ws_url=proxy.url, resume=True)
    result = await client.execute_commands(
        commands=[CommandInterface(command="seq 1 1000000")],
        options=exec_options(on_command_output=on_output, timeout=120),
    )

    assert result.results[0].exit_code == 0
    assert "".join(chunks) == "".join(f"{i}\n" for i in range(1, 1000001))
    assert result.metadata["reconnects"] == proxy.cuts >= 1


async def test_a_session_goes_on_after_a_cut_between_calls(proxy):
    client = RuntimeUseClient(ws_url=proxy.url, resume=True)
    async with client.session() as session:
        first = await session.query(prompt="ECHO:one", options=query_options())
        proxy.cut()
        second = await session.query(prompt="ECHO:two", options=query_options())
    assert (first.data.text, second.data.text) == ("one", "two")
    assert first.metadata["reconnects"] == 0
    assert second.metadata["reconnects"] in (0, 1)
    assert proxy.connections >= 2


async def test_giving_up_after_the_grace_period(start_runtime):
    rt = start_runtime("--heartbeat-interval", "0.2", "--resume-grace", "1.5")
    proxy = await CutProxy(rt.port).start()
    try:
        async def on_message(message) -> None:
            proxy.refusing = True
            proxy.cut()

        client = RuntimeUseClient(ws_url=proxy.url, resume=True)
        started = time.monotonic()
        with pytest.raises(AgentRuntimeError) as caught:
            await client.query(
                prompt="STREAM:100000",
                options=query_options(on_assistant_message=on_message, timeout=60),
            )
        elapsed = time.monotonic() - started
    finally:
        await proxy.close()
    assert caught.value.error == "No result message received"
    assert "grace period" in caught.value.metadata["reason"]
    assert 1.5 <= elapsed < 60
    assert proxy.connections >= 3  # retried, with backoff


async def test_without_resume_results_have_no_reconnects(client):
    result = await client.query(prompt="ECHO:plain", options=query_options())
    assert result.data.text == "plain"
    assert "reconnects" not in (result.metadata or {})
    listed = await client.execute_commands(
        commands=[CommandInterface(command="echo hi")], options=exec_options()
    )
    assert not listed.metadata


async def test_a_runtime_without_the_extension_fails_at_once():
    import asyncio
    import time

    # Completes the upgrade without advertising the extension (X-RuntimeUse-Resumable),
    # as the upstream runtime does, then says nothing.
    async def silent(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        import base64
        import hashlib

        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await writer.drain()
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        # The default connect timeout (60 s) is not waited out.
        client = RuntimeUseClient(ws_url=f"ws://127.0.0.1:{port}", resume=True)
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="does not support the resumable"):
            await client.query(prompt="ECHO:x", options=query_options())
        took = time.monotonic() - started
        assert took < 40, f"failed after {took:.1f} s, not well before 60 s"
    finally:
        server.close()


def test_resume_with_a_transport_is_refused():
    async def transport(outgoing):
        yield {}

    with pytest.raises(ValueError, match="resume"):
        RuntimeUseClient(transport=transport, resume=True)
