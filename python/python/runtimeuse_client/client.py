"""The client and the session: thin Python over the Rust client in ``_native``.

Rust owns the WebSocket, parses every message and runs the request state machine on its
own Tokio runtime. Each call is a native event stream, consumed by ``_request.Call``.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator, Mapping

from . import _native
from ._loop import current_bridge
from ._request import (
    COMMANDS_CANCELLED,
    QUERY_CANCELLED,
    Call,
    command_execution_json,
    command_result,
    default_logger,
    error_from_native,
    invocation_json,
    query_result,
)
from ._transport import Transport
from .types import (
    ArtifactUploadRequestMessageInterface,
    ArtifactUploadResult,
    CommandExecutionResult,
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    QueryResult,
)

__all__ = ["RuntimeUseClient", "RuntimeUseSession"]

class RuntimeUseSession:
    """One connection to the runtime serving many sequential calls.

    Obtained from ``async with client.session() as session``. ``query`` and
    ``execute_commands`` take the same arguments as the client's; concurrent calls wait
    for their turn. Artifact directories stay watched for the whole session; upload
    requests that arrive after the last call are answered, while the session closes, by
    the most recent ``on_artifact_upload_request``.
    """

    def __init__(self, native: _native.Session) -> None:
        self._native = native
        self._lock = asyncio.Lock()
        self._abort_event = asyncio.Event()
        self._last_artifact_callback = None
        self._end_session_timeout_s: float = 60.0

    def abort(self) -> None:
        """Cancels the call in flight, which raises :class:`CancelledException`.

        The runtime stops that request (its commands are killed); the session stays
        usable for the next call.
        """
        self._abort_event.set()
        self._native.abort()

    async def query(self, prompt: str, options: QueryOptions) -> QueryResult:
        """Runs the agent once on this session; see :meth:`RuntimeUseClient.query`."""
        async with self._lock:
            self._abort_event = asyncio.Event()
            stream = self._native.query(
                invocation_json(prompt, options),
                current_bridge(),
                options.logger or default_logger,
                self._late_artifact_handler(options),
            )
            payload = await Call(
                stream, options, self._abort_event, QUERY_CANCELLED, "result_message"
            ).run()
            return query_result(payload)

    async def execute_commands(
        self, commands: list[CommandInterface], options: ExecuteCommandsOptions
    ) -> CommandExecutionResult:
        """Runs commands on this session; see :meth:`RuntimeUseClient.execute_commands`."""
        async with self._lock:
            self._abort_event = asyncio.Event()
            stream = self._native.execute_commands(
                command_execution_json(commands, options),
                current_bridge(),
                options.logger or default_logger,
                self._late_artifact_handler(options),
            )
            payload = await Call(
                stream,
                options,
                self._abort_event,
                COMMANDS_CANCELLED,
                "command_execution_result_message",
            ).run()
            return command_result(payload, options)

    def _late_artifact_handler(self, options: QueryOptions | ExecuteCommandsOptions):
        """The coroutine function the native session calls for requests arriving while
        it closes, or ``None`` to keep the previous one."""
        callback = options.on_artifact_upload_request
        if callback is None:
            return None
        logger = options.logger or default_logger

        async def answer(filename: str, filepath: str) -> tuple[str, str] | None:
            request = ArtifactUploadRequestMessageInterface(
                message_type="artifact_upload_request_message",
                filename=filename,
                filepath=filepath,
            )
            try:
                target = await callback(request)
                target = ArtifactUploadResult.model_validate(target, from_attributes=True)
            except Exception:
                logger.exception("artifact upload callback failed while the session closed")
                return None
            return target.presigned_url, target.content_type

        return answer

    async def _end_session(self) -> None:
        problem = await self._native.close(
            current_bridge(), default_logger, self._end_session_timeout_s
        )
        if problem is not None:
            default_logger.warning("runtimeuse session did not end cleanly: %s", problem)


class RuntimeUseClient:
    """Client of a runtimeuse runtime at ``ws_url`` (``ws://`` or ``wss://``).

    :meth:`query` and :meth:`execute_commands` each open a connection, run one request
    and close it; :meth:`session` keeps one connection for many calls. The connection,
    message parsing and dispatch run in Rust; callbacks are awaited on the caller's event
    loop.

    Authentication: a runtime started with a token accepts it as ``?token=`` in the URL,
    or as a header: pass ``token="..."`` (sent as ``Authorization: Bearer ...``) or any
    ``headers={...}``; both go with every connection's upgrade request and never appear
    in logs or error messages. ``connect_timeout`` (seconds, default 60) bounds opening a
    connection (TCP, TLS and upgrade); expiry raises ``TimeoutError``.

    ``transport`` replaces the WebSocket, as in the published client: a callable taking
    an ``asyncio.Queue`` of outgoing messages and returning an async generator of the
    runtime's messages (see ``runtimeuse_client._transport``). Connection, message
    parsing and the request state machine stay in Rust; the transport only carries
    messages. Unlike the published client, :meth:`session` works over it too (one
    transport call carries the whole session). A transport that raises ends the call
    with ``AgentRuntimeError("No result message received")``; the exception is logged.

    ``resume=True`` (off by default) makes every connection, one-shot calls and
    sessions alike, a *durable session* of the runtime (the protocol's resumable-sessions
    extension): when the connection drops, the client reconnects transparently, with
    jittered exponential backoff (100 ms doubling to 5 s), for as long as the runtime's
    grace period (``--resume-grace``, 120 s by default). The runtime replays what the
    client missed and the client re-sends what the runtime missed, so callbacks see every
    message exactly once and in order and the call goes on. Results count the
    reconnections during the call in ``metadata["reconnects"]`` (on ``QueryResult`` and
    ``CommandExecutionResult``). A resume the runtime refuses raises
    ``AgentRuntimeError`` with ``metadata["error_name"] == "ResumeRefused"`` and
    ``metadata["reason"]`` (``"expired"``, ``"ended"``, ``"invalid_key"``...); running out
    of the grace period, or another connection taking the session over, raises
    ``AgentRuntimeError("No result message received")`` with the reason in
    ``metadata["reason"]``. The runtime must support the extension: opening a connection
    to a runtime without it (its ``101`` has no ``X-RuntimeUse-Resumable`` header and no
    durable session is offered within 5 s) raises ``ConnectionError`` saying so.
    Not available with ``transport``.

    Raises ``ValueError`` for a URL that is not a WebSocket URL or a header that is not
    valid HTTP, when neither ``ws_url`` nor ``transport`` is given, or for ``resume=True``
    with a ``transport``.
    """

    def __init__(
        self,
        ws_url: str | None = None,
        transport: Transport | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        connect_timeout: float | None = None,
        resume: bool = False,
    ) -> None:
        if ws_url is None and transport is None:
            raise ValueError("Either ws_url or transport must be provided")
        self.ws_url = ws_url
        self._transport = transport
        self._native = _native.Client(
            # With a transport the URL only names the runtime in errors and logs.
            ws_url if transport is None else "ws://custom-transport",
            list((headers or {}).items()),
            token,
            connect_timeout,
            transport,
            bool(resume),
        )
        self._abort_event = asyncio.Event()

    def abort(self) -> None:
        """Cancels this client's one-shot call in flight from any coroutine; the call
        raises :class:`CancelledException`. Use :meth:`RuntimeUseSession.abort` for
        sessions."""
        self._abort_event.set()
        self._native.abort()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[RuntimeUseSession]:
        """Opens a persistent session; on exit it ends it (``end_session_message``),
        answering late artifact upload requests until the runtime confirms.

        Raises ``ConnectionError`` when the runtime cannot be reached.
        """
        native = await self._native.connect(current_bridge(), default_logger)
        if isinstance(native, dict):
            raise error_from_native(native, QUERY_CANCELLED)
        session = RuntimeUseSession(native)
        try:
            yield session
        finally:
            await session._end_session()

    async def query(self, prompt: str, options: QueryOptions) -> QueryResult:
        """Sends ``prompt`` to the agent and returns its result.

        Raises:
            AgentRuntimeError: the runtime reported an error (``.error``, ``.metadata``),
                ``idle_timeout`` or a callback time limit expired, or the connection
                ended without a result.
            CancelledException: :meth:`abort` was called.
            TimeoutError: ``options.timeout`` expired.
            ConnectionError: the runtime could not be reached; as with the published
                client, the ``OSError`` subclass of the cause when there is one
                (``ConnectionRefusedError`` for a refused connection), and
                ``TimeoutError`` when ``connect_timeout`` expired. A connection that
                drops mid-call raises ``AgentRuntimeError("No result message received")``
                with the reason in ``metadata["reason"]``, as the published client does.
            Exception: whatever a callback raised (the call is stopped).
        """
        self._abort_event = asyncio.Event()
        stream = self._native.query(
            invocation_json(prompt, options), current_bridge(), options.logger or default_logger
        )
        payload = await Call(
            stream, options, self._abort_event, QUERY_CANCELLED, "result_message"
        ).run()
        return query_result(payload)

    async def execute_commands(
        self, commands: list[CommandInterface], options: ExecuteCommandsOptions
    ) -> CommandExecutionResult:
        """Runs shell commands in the sandbox without the agent.

        The runtime runs ``commands`` in order and stops after the first one that exits
        non-zero. The result lists every command that ran with its exit code and stdout;
        a non-zero exit is *not* an exception unless ``options.check`` is true, in which
        case :class:`AgentRuntimeError` is raised with ``metadata`` holding ``command``,
        ``exit_code`` and ``results``.

        Raises: as :meth:`query`.
        """
        self._abort_event = asyncio.Event()
        stream = self._native.execute_commands(
            command_execution_json(commands, options),
            current_bridge(),
            options.logger or default_logger,
        )
        payload = await Call(
            stream,
            options,
            self._abort_event,
            COMMANDS_CANCELLED,
            "command_execution_result_message",
        ).run()
        return command_result(payload, options)
