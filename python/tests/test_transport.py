"""``RuntimeUseClient(transport=...)``: the published client's custom transport hook, with
the Rust client's state machine running over it (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets

from runtimeuse_client import (
    AgentRuntimeError,
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeUseClient,
)


def options(**kw) -> QueryOptions:
    return QueryOptions(system_prompt="", model="echo", **kw)


class RelayTransport:
    """A transport of the published protocol relaying to the real runtime over its own
    WebSocket (as a proxy or a provider tunnel would), counting what it carried."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened = 0
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []

    async def __call__(self, send_queue: asyncio.Queue[dict]):
        self.opened += 1
        async with websockets.connect(self.url) as ws:

            async def forward() -> None:
                while True:
                    message = await send_queue.get()
                    self.sent.append(message)
                    await ws.send(json.dumps(message))

            sender = asyncio.ensure_future(forward())
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    self.received.append(message)
                    yield message
            finally:
                sender.cancel()


async def test_one_shot_calls_go_through_the_transport(runtime):
    transport = RelayTransport(runtime.url)
    client = RuntimeUseClient(transport=transport)
    seen = []

    async def on_assistant(message) -> None:
        seen.extend(message.text_blocks)

    result = await client.query("STREAM:3", options(on_assistant_message=on_assistant))
    assert result.data.text == "streamed 3 messages"
    assert seen == ["message 1 of 3", "message 2 of 3", "message 3 of 3"]
    done = await client.execute_commands(
        [CommandInterface(command="echo via-transport")], ExecuteCommandsOptions()
    )
    assert done.results[0].stdout == "via-transport\n"
    assert transport.opened == 2
    assert [m["message_type"] for m in transport.sent] == [
        "invocation_message",
        "command_execution_message",
    ]
    assert transport.received[-1]["message_type"] == "command_execution_result_message"


async def test_a_session_runs_over_one_transport_call(runtime):
    transport = RelayTransport(runtime.url)
    client = RuntimeUseClient(transport=transport)
    async with client.session() as session:
        for i in range(3):
            assert (await session.query(f"ECHO:{i}", options())).data.text == str(i)
    assert transport.opened == 1
    assert transport.sent[-1]["message_type"] == "end_session_message"


async def test_abort_sends_cancel_through_the_transport(runtime):
    from runtimeuse_client import CancelledException

    transport = RelayTransport(runtime.url)
    client = RuntimeUseClient(transport=transport)
    asyncio.get_running_loop().call_later(0.2, client.abort)
    with pytest.raises(CancelledException):
        await asyncio.wait_for(client.query("SLOW:30000", options()), 30)
    assert "cancel_message" in [m["message_type"] for m in transport.sent]


async def test_in_process_transport_without_any_network():
    """A transport that is the runtime itself: a result for each invocation."""

    async def fake_runtime(send_queue: asyncio.Queue[dict]):
        request = await send_queue.get()
        assert request["message_type"] == "invocation_message"
        yield {"message_type": "assistant_message", "text_blocks": ["thinking"]}
        yield {
            "message_type": "result_message",
            "data": {"type": "text", "text": request["user_prompt"].upper()},
            "metadata": {"fake": True},
        }
        await asyncio.Event().wait()  # stays open until the client closes it

    result = await RuntimeUseClient(transport=fake_runtime).query("hello", options())
    assert result.data.text == "HELLO"
    assert result.metadata == {"fake": True}


async def test_malformed_message_from_the_transport_is_an_error_not_a_crash():
    async def broken(send_queue: asyncio.Queue[dict]):
        await send_queue.get()
        yield {"message_type": "result_message", "data": "not an object"}
        await asyncio.Event().wait()

    with pytest.raises(AgentRuntimeError):
        await asyncio.wait_for(RuntimeUseClient(transport=broken).query("x", options()), 30)


async def test_a_failing_transport_ends_the_call_and_is_logged(caplog):
    async def failing(send_queue: asyncio.Queue[dict]):
        await send_queue.get()
        raise OSError("tunnel collapsed")
        yield {}  # an async generator

    caplog.set_level(logging.ERROR, logger="runtimeuse_client")
    with pytest.raises(AgentRuntimeError) as info:
        await asyncio.wait_for(RuntimeUseClient(transport=failing).query("x", options()), 30)
    assert info.value.error == "No result message received"
    assert any("tunnel collapsed" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_neither_url_nor_transport_is_a_value_error():
    with pytest.raises(ValueError):
        RuntimeUseClient()
