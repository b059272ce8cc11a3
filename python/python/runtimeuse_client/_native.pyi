"""Type stubs of the Rust extension module (crate `runtimeuse-client-py`).

Internal API of the package: use `runtimeuse_client.RuntimeUseClient` instead.
"""

from typing import Any, Awaitable, Callable, Literal

__version__: str

# Items of `EventStream.next_batch`: ("assistant_message" | "command_output_message" |
# "heartbeat_message" | "result_message" | "command_execution_result_message", wire dict),
# ("artifact_upload_request_message", ArtifactUploadRequest) or ("error", error dict with
# "kind" and "message").
EventItem = tuple[str, Any]

LateArtifactHandler = Callable[[str, str], Awaitable[tuple[str, str] | None]]

# Resolves the futures of one event loop on that loop's thread (see _loop.py).
class LoopBridge:
    def __init__(self, loop: Any) -> None: ...
    def fileno(self) -> int: ...
    def drain(self) -> None: ...

class EventStream:
    def next_batch(self, bridge: LoopBridge) -> Awaitable[list[EventItem]]: ...
    def aclose(self, bridge: LoopBridge) -> Awaitable[None]: ...

# One connection of a custom transport (see _transport.py).
class TransportEnd:
    def deliver(self, frame: str) -> bool: ...
    def close(self) -> None: ...
    def next_outbound(self, bridge: LoopBridge) -> Awaitable[str | None]: ...

class ArtifactUploadRequest:
    @property
    def filename(self) -> str: ...
    @property
    def filepath(self) -> str: ...
    def respond(self, presigned_url: str, content_type: str) -> None: ...
    # Leaves it unanswered, so that the call does not wait for an answer (no-op once
    # answered).
    def discard(self) -> None: ...

# idle_timeout is enforced by the Python layer around EventStream.next_batch.
class Client:
    def __init__(
        self,
        ws_url: str,
        headers: list[tuple[str, str]] = ...,
        token: str | None = None,
        connect_timeout: float | None = None,
        transport: Any = None,
        resume: bool = False,
    ) -> None: ...
    # Rust log lines of the call go to `logger` (a logging.Logger).
    def query(self, message_json: str, bridge: LoopBridge, logger: Any) -> EventStream: ...
    def execute_commands(
        self, message_json: str, bridge: LoopBridge, logger: Any
    ) -> EventStream: ...
    def abort(self) -> None: ...
    # A Session, or the error dict (see EventItem) of why the connection failed.
    def connect(self, bridge: LoopBridge, logger: Any) -> Awaitable[Session | dict[str, Any]]: ...

class Session:
    def query(
        self,
        message_json: str,
        bridge: LoopBridge,
        logger: Any,
        on_late_artifact: LateArtifactHandler | None = None,
    ) -> EventStream: ...
    def execute_commands(
        self,
        message_json: str,
        bridge: LoopBridge,
        logger: Any,
        on_late_artifact: LateArtifactHandler | None = None,
    ) -> EventStream: ...
    def abort(self) -> None: ...
    def close(self, bridge: LoopBridge, logger: Any, timeout: float) -> Awaitable[str | None]: ...

ErrorKind = Literal[
    "runtime", "cancelled", "timeout", "connect", "connection_closed", "protocol",
    "invalid_options", "callback", "other",
]
