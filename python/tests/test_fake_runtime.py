"""Against a scripted fake runtime: timings and message orders the real runtime does not
produce on demand (a runtime that never answers, a slow cancel, an upload request right
before the terminal)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable

import pytest
from runtimeuse_client import ArtifactUploadResult, CancelledException, RuntimeUseClient
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from _support import query_options


class FakeConn:
    """One accepted connection, driven by a script."""

    def __init__(self, ws: ServerConnection, received: list[dict[str, Any]]) -> None:
        self.ws = ws
        self.received = received

    async def recv(self) -> dict[str, Any] | None:
        """The next message from the client; `None` once it went away."""
        try:
            message = json.loads(await self.ws.recv())
        except ConnectionClosed:
            return None
        self.received.append(message)
        return message

    async def expect(self, message_type: str) -> dict[str, Any]:
        message = await self.recv()
        assert message is not None, f"closed while waiting for {message_type}"
        assert message["message_type"] == message_type, message
        return message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def drain(self) -> None:
        """Reads, answering nothing, until the client goes away."""
        while await self.recv() is not None:
            pass

    async def serve_rest(self) -> None:
        """Answers invocations with their prompt and confirms the end of the session."""
        while (message := await self.recv()) is not None:
            if message["message_type"] == "invocation_message":
                await self.send(text_result(message["user_prompt"]))
            elif message["message_type"] == "end_session_message":
                await self.send({"message_type": "end_session_confirm_message"})


class FakeRuntime:
    """A WebSocket server on 127.0.0.1 running `script` for each connection."""

    def __init__(self, script: Callable[[FakeConn], Awaitable[None]]) -> None:
        self.script = script
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def __aenter__(self) -> FakeRuntime:
        async def handler(ws: ServerConnection) -> None:
            await self.script(FakeConn(ws, self.received))

        self._server = await serve(handler, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    def types(self) -> list[str]:
        return [m["message_type"] for m in self.received]

    async def wait_for(self, message_type: str, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if message_type in self.types():
                return True
            await asyncio.sleep(0.02)
        return False


def text_result(text: str) -> dict[str, Any]:
    return {"message_type": "result_message", "data": {"type": "text", "text": text},
            "metadata": {}}


async def silent(conn: FakeConn) -> None:
    await conn.drain()


# --------------------------------------------------------------------------- sessions


async def test_leaving_a_session_keeps_its_timeout_after_a_call_timed_out():
    async with FakeRuntime(silent) as fake:
        client = RuntimeUseClient(ws_url=fake.url)
        left_at = 0.0

        async def use_session() -> None:
            nonlocal left_at
            async with client.session() as session:
                session._end_session_timeout_s = 2
                with pytest.raises(TimeoutError):
                    await session.query(prompt="p", options=query_options(timeout=1))
                left_at = time.monotonic()

        try:
            await asyncio.wait_for(use_session(), 10)
        except TimeoutError:
            pytest.fail("leaving the session ignored _end_session_timeout_s")
        assert time.monotonic() - left_at < 4
        assert fake.types() == ["invocation_message", "cancel_message", "end_session_message"]


async def test_session_abort_while_the_previous_cancel_is_still_draining():
    async def slow_to_cancel(conn: FakeConn) -> None:
        await conn.expect("invocation_message")
        await conn.expect("cancel_message")
        await asyncio.sleep(5)
        await conn.send({"message_type": "error_message", "error": "Request cancelled",
                         "metadata": {}})
        await conn.serve_rest()

    async with FakeRuntime(slow_to_cancel) as fake:
        client = RuntimeUseClient(ws_url=fake.url)
        async with client.session() as session:
            with pytest.raises(TimeoutError):
                await session.query(prompt="first", options=query_options(timeout=0.5))

            async def abort_soon() -> None:
                await asyncio.sleep(0.2)
                session.abort()

            aborter = asyncio.create_task(abort_soon())
            started = time.monotonic()
            with pytest.raises(CancelledException, match="Query was cancelled"):
                await session.query(prompt="second", options=query_options())
            # Against the 5 s the runtime takes to wind the cancelled request down.
            assert time.monotonic() - started < 3.0
            await aborter

            third = await session.query(prompt="third", options=query_options())
        assert third.data.text == "third"
        # The aborted call never sent its invocation.
        assert fake.types() == ["invocation_message", "cancel_message", "invocation_message",
                                "end_session_message"]
        assert fake.received[2]["user_prompt"] == "third"


# --------------------------------------------------------------------------- artifacts


async def upload_request_then_terminal(conn: FakeConn) -> None:
    await conn.expect("invocation_message")
    await conn.send({"message_type": "artifact_upload_request_message", "filename": "a.txt",
                     "filepath": "/out/a.txt"})
    await conn.send(text_result("done"))
    await conn.serve_rest()


async def slow_upload_target(request) -> ArtifactUploadResult:
    await asyncio.sleep(1)
    return ArtifactUploadResult(presigned_url=f"http://blob/{request.filename}",
                                content_type="text/plain")


async def test_one_shot_call_answers_an_upload_request_sent_just_before_the_terminal():
    async with FakeRuntime(upload_request_then_terminal) as fake:
        client = RuntimeUseClient(ws_url=fake.url)
        result = await client.query(prompt="p", options=query_options(
            artifacts_dirs=["/out"], on_artifact_upload_request=slow_upload_target))
        assert result.data.text == "done"
        assert await fake.wait_for("artifact_upload_response_message")
        response = fake.received[1]
        assert response["filepath"] == "/out/a.txt"
        assert response["presigned_url"] == "http://blob/a.txt"


async def test_session_call_answers_an_upload_request_before_it_returns():
    async with FakeRuntime(upload_request_then_terminal) as fake:
        client = RuntimeUseClient(ws_url=fake.url)
        async with client.session() as session:
            await session.query(prompt="p", options=query_options(
                artifacts_dirs=["/out"], on_artifact_upload_request=slow_upload_target))
            # The runtime waits for it now, not at the next call or the close.
            assert await fake.wait_for("artifact_upload_response_message", timeout=2)


async def test_an_upload_request_without_a_callback_does_not_hold_the_call():
    async with FakeRuntime(upload_request_then_terminal) as fake:
        client = RuntimeUseClient(ws_url=fake.url)
        started = time.monotonic()
        # A runtime may ask even when this call watches no directory (an earlier call of
        # the session did); without a callback the request is left unanswered.
        result = await client.query(prompt="p", options=query_options())
        assert result.data.text == "done"
        assert time.monotonic() - started < 5
        assert "artifact_upload_response_message" not in fake.types()
