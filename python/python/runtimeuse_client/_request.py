"""One call over the native event stream: the request loop of the Python layer.

It awaits the stream's batches, runs the user's callbacks on the caller's event loop with
their time limits, answers artifact upload requests through the native responder, and
turns the native outcome into results and the package's exceptions.

``idle_timeout`` is enforced here, around waiting for the next batch only, as the
published client does: time spent in callbacks does not count as the runtime's silence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import _native
from ._loop import current_bridge
from ._timeouts import timeout as _timeout
from .exceptions import AgentRuntimeError, CancelledException
from .types import (
    ArtifactUploadRequestMessageInterface,
    ArtifactUploadResult,
    AssistantMessageInterface,
    CommandExecutionMessage,
    CommandExecutionResult,
    CommandInterface,
    CommandOutputMessageInterface,
    ExecuteCommandsOptions,
    InvocationMessage,
    QueryOptions,
    QueryResult,
)

default_logger = logging.getLogger("runtimeuse_client")

QUERY_CANCELLED = "Query was cancelled"
COMMANDS_CANCELLED = "Command execution was cancelled"


def invocation_json(prompt: str, options: QueryOptions) -> str:
    return InvocationMessage(
        message_type="invocation_message",
        user_prompt=prompt,
        system_prompt=options.system_prompt,
        model=options.model,
        output_format_json_schema_str=options.output_format_json_schema_str,
        source_id=options.source_id,
        agent_env=options.agent_env,
        secrets_to_redact=options.secrets_to_redact,
        artifacts_dirs=options.artifacts_dirs or None,
        artifacts_ignore_content=options.artifacts_ignore_content,
        pre_agent_invocation_commands=options.pre_agent_invocation_commands,
        post_agent_invocation_commands=options.post_agent_invocation_commands,
        pre_agent_downloadables=options.pre_agent_downloadables,
    ).model_dump_json()


def command_execution_json(
    commands: list[CommandInterface], options: ExecuteCommandsOptions
) -> str:
    return CommandExecutionMessage(
        message_type="command_execution_message",
        source_id=options.source_id,
        secrets_to_redact=options.secrets_to_redact,
        commands=commands,
        artifacts_dirs=options.artifacts_dirs or None,
        artifacts_ignore_content=options.artifacts_ignore_content,
        pre_execution_downloadables=options.pre_execution_downloadables,
    ).model_dump_json()


def connect_error(payload: dict[str, Any]) -> OSError:
    """A connect failure as the exception the published client raises for it: the
    ``OSError`` subclass of its errno (``ConnectionRefusedError`` for a refused
    connection), ``TimeoutError`` when the handshake took too long, else
    ``ConnectionError`` (an HTTP refusal of the upgrade, e.g. 401, says its status in the
    message)."""
    message = payload["message"]
    if payload.get("timed_out"):
        return TimeoutError(message)
    errno = payload.get("errno")
    if errno is not None:
        # OSError(errno, ...) is the errno's subclass: ConnectionRefusedError for
        # ECONNREFUSED, ConnectionResetError for ECONNRESET...
        return OSError(errno, message)
    return ConnectionError(message)


def error_from_native(payload: dict[str, Any], cancelled: str) -> BaseException:
    """The exception a user sees for an error of the native client."""
    kind = payload["kind"]
    message = payload["message"]
    if kind == "runtime":
        return AgentRuntimeError(payload["error"], metadata=payload["metadata"])
    if kind == "cancelled":
        return CancelledException(cancelled)
    if kind == "timeout":
        return TimeoutError(message)
    if kind == "connect":
        return connect_error(payload)
    if kind == "connection_closed":
        return AgentRuntimeError(
            "No result message received", metadata={"reason": payload["reason"]}
        )
    if kind == "invalid_options":
        return ValueError(message)
    return AgentRuntimeError(message)


class Call:
    """What one call needs while it consumes its native event stream."""

    def __init__(
        self,
        stream: _native.EventStream,
        options: QueryOptions | ExecuteCommandsOptions,
        abort_event: asyncio.Event,
        cancelled_message: str,
        terminal: str,
    ) -> None:
        self.stream = stream
        self.bridge = current_bridge()
        self.options = options
        self.abort_event = abort_event
        self.cancelled_message = cancelled_message
        self.terminal = terminal
        self.logger = options.logger or default_logger
        self.message_count = 0
        self.last_message_type: str | None = None

    async def run(self) -> dict[str, Any]:
        """Awaits the call under its overall timeout; returns the terminal message."""
        try:
            async with _timeout(self.options.timeout):
                return await self._consume()
        except TimeoutError:
            self.logger.info(
                "runtimeuse call timed out (source_id=%s, timeout=%s)",
                self.options.source_id,
                self.options.timeout,
            )
            raise
        finally:
            # Ends the call on the runtime too when it stopped early (timeout, callback
            # failure, task cancelled): a one-shot connection is closed, a session call
            # is cancelled.
            await self.stream.aclose(self.bridge)

    async def _next_batch(self) -> list[_native.EventItem]:
        """The next events, within ``idle_timeout`` of asking for them."""
        idle = self.options.idle_timeout
        if idle is None:
            return await self.stream.next_batch(self.bridge)
        try:
            async with _timeout(idle):
                return await self.stream.next_batch(self.bridge)
        except TimeoutError as exc:
            self.logger.error(
                "No message received from agent runtime for %ss "
                "(last_message_type=%s, message_count=%s)",
                idle,
                self.last_message_type,
                self.message_count,
            )
            raise AgentRuntimeError(
                f"No message received from agent runtime for {idle}s",
                metadata={
                    "timeout_type": "idle_timeout",
                    "idle_timeout": idle,
                    "last_message_type": self.last_message_type,
                    "message_count": self.message_count,
                    "phase": "waiting_for_message",
                },
            ) from exc

    async def _consume(self) -> dict[str, Any]:
        while True:
            batch = await self._next_batch()
            if not batch:
                raise AgentRuntimeError("No result message received")
            for kind, payload in batch:
                self.message_count += 1
                self.last_message_type = kind
                if kind == self.terminal:
                    if self.abort_event.is_set():
                        raise CancelledException(self.cancelled_message)
                    return payload
                if kind == "error":
                    raise error_from_native(payload, self.cancelled_message)
                if self.abort_event.is_set():
                    # The runtime is cancelling; nothing more reaches the callbacks.
                    if kind == "artifact_upload_request_message":
                        payload.discard()
                    continue
                if kind == "command_output_message":
                    callback = self.options.on_command_output
                    if callback is not None:
                        # Hot path: pydantic-core's validation is cheaper than
                        # model_construct (which runs in Python).
                        await callback(CommandOutputMessageInterface.model_validate(payload))
                elif kind == "assistant_message":
                    await self._on_assistant(payload)
                elif kind == "artifact_upload_request_message":
                    try:
                        await self._on_artifact_request(payload)
                    finally:
                        # Unanswered, it would hold the call's end back (the native
                        # call waits for the answers to the requests it handed out).
                        payload.discard()
                elif kind == "heartbeat_message":
                    self.logger.debug(
                        "runtime heartbeat phase=%s elapsed_ms=%s",
                        payload["phase"],
                        payload["elapsed_ms"],
                    )

    async def _on_assistant(self, payload: dict[str, Any]) -> None:
        callback = self.options.on_assistant_message
        if callback is None:
            return
        message = AssistantMessageInterface.model_validate(payload)
        limit = self.options.assistant_callback_timeout
        if limit is None:
            # Hot path: a timeout context costs more than the await itself.
            await callback(message)
            return
        try:
            async with _timeout(limit):
                await callback(message)
        except TimeoutError as exc:
            raise AgentRuntimeError(
                "on_assistant_message callback timed out",
                metadata={
                    "timeout_type": "assistant_callback_timeout",
                    "timeout": limit,
                    "last_message_type": "assistant_message",
                    "message_count": self.message_count,
                    "phase": "assistant_callback",
                },
            ) from exc

    async def _on_artifact_request(self, request: _native.ArtifactUploadRequest) -> None:
        callback = self.options.on_artifact_upload_request
        if callback is None:
            self.logger.warning(
                "artifact upload request for %s but no on_artifact_upload_request callback",
                request.filepath,
            )
            return
        message = ArtifactUploadRequestMessageInterface(
            message_type="artifact_upload_request_message",
            filename=request.filename,
            filepath=request.filepath,
        )
        limit = self.options.artifact_upload_callback_timeout
        try:
            async with _timeout(limit):
                target = await callback(message)
        except TimeoutError as exc:
            if limit is None:
                raise
            raise AgentRuntimeError(
                "on_artifact_upload_request callback timed out",
                metadata={
                    "timeout_type": "artifact_upload_callback_timeout",
                    "timeout": limit,
                    "filename": request.filename,
                    "filepath": request.filepath,
                },
            ) from exc
        target = ArtifactUploadResult.model_validate(target, from_attributes=True)
        try:
            request.respond(target.presigned_url, target.content_type)
        except ConnectionError as exc:
            self.logger.warning("could not answer the upload request of %s: %s",
                                request.filepath, exc)


def query_result(payload: dict[str, Any]) -> QueryResult:
    return QueryResult(data=payload["data"], metadata=payload["metadata"])


def command_result(
    payload: dict[str, Any], options: ExecuteCommandsOptions
) -> CommandExecutionResult:
    result = CommandExecutionResult.model_validate(payload)
    if options.check:
        failed = next((item for item in result.results if item.exit_code != 0), None)
        if failed is not None:
            raise AgentRuntimeError(
                f"command failed with exit code: {failed.exit_code}",
                metadata={
                    "command": failed.command,
                    "exit_code": failed.exit_code,
                    "results": [item.model_dump() for item in result.results],
                },
            )
    return result
