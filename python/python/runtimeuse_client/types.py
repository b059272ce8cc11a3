"""Data types of the runtimeuse client: wire messages, results and call options.

Messages and results are pydantic models, with the fields and defaults of the published
``runtimeuse-client`` package, so ``isinstance`` checks, attribute access and
``model_dump()`` behave the same. Call options are dataclasses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Union

from pydantic import BaseModel, Field

__all__ = [
    "AgentRuntimeMessageInterface",
    "RuntimeEnvironmentDownloadableInterface",
    "CommandInterface",
    "InvocationMessage",
    "CommandExecutionMessage",
    "TextResult",
    "StructuredOutputResult",
    "QueryResult",
    "ResultMessageInterface",
    "AssistantMessageInterface",
    "CommandOutputMessageInterface",
    "HeartbeatMessageInterface",
    "ArtifactUploadRequestMessageInterface",
    "ArtifactUploadResponseMessageInterface",
    "ErrorMessageInterface",
    "CancelMessage",
    "EndSessionMessage",
    "EndSessionConfirmMessage",
    "CommandResultItem",
    "CommandExecutionResult",
    "CommandExecutionResultMessageInterface",
    "ArtifactUploadResult",
    "OnAssistantMessageCallback",
    "OnCommandOutputCallback",
    "OnArtifactUploadRequestCallback",
    "QueryOptions",
    "ExecuteCommandsOptions",
]

# --------------------------------------------------------------------------- inputs


class RuntimeEnvironmentDownloadableInterface(BaseModel):
    """A file the runtime fetches (HTTP GET) into ``working_dir`` before the work starts.

    A ``.zip`` is extracted there and then removed.
    """

    download_url: str
    working_dir: str


class CommandInterface(BaseModel):
    """A shell command run by the runtime with ``/bin/sh -c``.

    ``cwd`` is created when missing; ``env`` is merged over the runtime's environment.
    """

    cwd: str | None = None
    command: str
    env: dict[str, str] | None = None


class InvocationMessage(BaseModel):
    """``invocation_message``: what :meth:`RuntimeUseClient.query` sends."""

    message_type: Literal["invocation_message"]
    source_id: str | None = None
    system_prompt: str
    user_prompt: str
    agent_env: dict[str, str] | None = None
    output_format_json_schema_str: str | None = None
    secrets_to_redact: list[str] = Field(default_factory=list)
    artifacts_dirs: list[str] | None = None
    artifacts_ignore_content: str | None = None
    pre_agent_invocation_commands: list[CommandInterface] | None = None
    post_agent_invocation_commands: list[CommandInterface] | None = None
    model: str
    pre_agent_downloadables: list[RuntimeEnvironmentDownloadableInterface] | None = None


class CommandExecutionMessage(BaseModel):
    """``command_execution_message``: what :meth:`RuntimeUseClient.execute_commands` sends."""

    message_type: Literal["command_execution_message"]
    source_id: str | None = None
    secrets_to_redact: list[str] = Field(default_factory=list)
    commands: list[CommandInterface]
    artifacts_dirs: list[str] | None = None
    artifacts_ignore_content: str | None = None
    pre_execution_downloadables: list[RuntimeEnvironmentDownloadableInterface] | None = None


class ArtifactUploadResponseMessageInterface(BaseModel):
    """``artifact_upload_response_message``: where the runtime should ``PUT`` a file."""

    message_type: Literal["artifact_upload_response_message"]
    filename: str
    filepath: str
    presigned_url: str
    content_type: str


class CancelMessage(BaseModel):
    """``cancel_message``: abort the request in flight."""

    message_type: Literal["cancel_message"]


class EndSessionMessage(BaseModel):
    """``end_session_message``: drain pending artifacts, confirm and close."""

    message_type: Literal["end_session_message"]


# --------------------------------------------------------------------------- outputs


class AgentRuntimeMessageInterface(BaseModel):
    """Any message the runtime sends during a request, by ``message_type``."""

    message_type: Literal[
        "result_message",
        "assistant_message",
        "command_output_message",
        "artifact_upload_request_message",
        "error_message",
        "command_execution_result_message",
        "heartbeat_message",
    ]


class TextResult(BaseModel):
    """The answer of a query without an output schema: ``text``."""

    type: Literal["text"] = "text"
    text: str


class StructuredOutputResult(BaseModel):
    """The answer of a query with an output schema: ``structured_output``."""

    type: Literal["structured_output"] = "structured_output"
    structured_output: dict[str, Any]


class QueryResult(BaseModel):
    """What :meth:`RuntimeUseClient.query` returns: ``data`` and execution ``metadata``."""

    metadata: dict[str, Any] | None = None
    data: Union[TextResult, StructuredOutputResult] = Field(discriminator="type")


class ResultMessageInterface(AgentRuntimeMessageInterface):
    """``result_message``: the terminal message of a successful invocation."""

    message_type: Literal["result_message"]
    metadata: dict[str, Any] | None = None
    data: Union[TextResult, StructuredOutputResult] = Field(discriminator="type")


class AssistantMessageInterface(AgentRuntimeMessageInterface):
    """``assistant_message``: text the agent produced while it works."""

    message_type: Literal["assistant_message"]
    text_blocks: list[str]


class CommandOutputMessageInterface(AgentRuntimeMessageInterface):
    """``command_output_message``: one chunk of a command's stdout or stderr.

    Sent for pre/post-agent commands and for :meth:`RuntimeUseClient.execute_commands`;
    ``command`` is the command string that printed it.
    """

    message_type: Literal["command_output_message"]
    stream: Literal["stdout", "stderr"]
    text: str
    command: str


class HeartbeatMessageInterface(AgentRuntimeMessageInterface):
    """``heartbeat_message``: the runtime is alive and still working."""

    message_type: Literal["heartbeat_message"]
    phase: str
    elapsed_ms: int


class ArtifactUploadRequestMessageInterface(AgentRuntimeMessageInterface):
    """``artifact_upload_request_message``: the runtime asks where to upload a file."""

    message_type: Literal["artifact_upload_request_message"]
    filename: str
    filepath: str


class ErrorMessageInterface(AgentRuntimeMessageInterface):
    """``error_message``: the terminal message of a failed request."""

    message_type: Literal["error_message"]
    error: str
    metadata: dict[str, Any] | None = None


class EndSessionConfirmMessage(BaseModel):
    """``end_session_confirm_message``: the runtime drained the session and closes it."""

    message_type: Literal["end_session_confirm_message"]


class CommandResultItem(BaseModel):
    """One command's outcome: the command string, its exit code and captured stdout."""

    command: str
    exit_code: int
    stdout: str | None = None


class CommandExecutionResult(BaseModel):
    """What :meth:`RuntimeUseClient.execute_commands` returns: one item per command run.

    ``metadata`` is what the client knows about the call: ``None`` unless the client was
    made with ``resume=True``, then ``metadata["reconnects"]`` counts the reconnections
    during the call (the runtime itself reports no metadata for commands). It is left out
    of ``model_dump()``, which keeps the published client's shape.
    """

    results: list[CommandResultItem]
    metadata: dict[str, Any] | None = Field(default=None, exclude=True)


class CommandExecutionResultMessageInterface(AgentRuntimeMessageInterface):
    """``command_execution_result_message``: the terminal message of a command execution."""

    message_type: Literal["command_execution_result_message"]
    results: list[CommandResultItem]


class ArtifactUploadResult(BaseModel):
    """The answer of an ``on_artifact_upload_request`` callback."""

    presigned_url: str
    content_type: str


# --------------------------------------------------------------------------- options

OnAssistantMessageCallback = Callable[[AssistantMessageInterface], Awaitable[None]]
OnCommandOutputCallback = Callable[[CommandOutputMessageInterface], Awaitable[None]]
OnArtifactUploadRequestCallback = Callable[
    [ArtifactUploadRequestMessageInterface], Awaitable[ArtifactUploadResult]
]


def _check_artifact_pairing(
    artifacts_dirs: list[str] | None,
    on_artifact_upload_request: OnArtifactUploadRequestCallback | None,
) -> None:
    # Watched directories need someone to answer the upload requests, and an upload
    # callback without directories would never be called.
    if bool(artifacts_dirs) != (on_artifact_upload_request is not None):
        raise ValueError(
            "artifacts_dirs and on_artifact_upload_request must be specified together"
        )


@dataclass
class QueryOptions:
    """Options of :meth:`RuntimeUseClient.query`: what to send and how to handle replies.

    Timeouts are in seconds; ``None`` means no limit. ``artifacts_dirs`` and
    ``on_artifact_upload_request`` go together (``ValueError`` otherwise).
    """

    #: System prompt of the agent.
    system_prompt: str
    #: Model name passed to the agent (e.g. ``"gpt-4.1"``).
    model: str
    #: JSON string of the wanted output format, usually
    #: ``{"type": "json_schema", "schema": {...}}``; the result is then a
    #: :class:`StructuredOutputResult` instead of a :class:`TextResult`.
    output_format_json_schema_str: str | None = None
    #: Caller-defined id, shown in the runtime's logs.
    source_id: str | None = None
    #: Environment variables for the agent.
    agent_env: dict[str, str] | None = None
    #: Values the runtime replaces by ``[REDACTED]`` in everything it sends back.
    secrets_to_redact: list[str] = field(default_factory=list)
    #: Sandbox directories watched for artifacts (for the rest of the connection).
    artifacts_dirs: list[str] | None = None
    #: Gitignore-syntax rules for every directory of ``artifacts_dirs``; they take
    #: precedence over a ``.artifactignore`` file there.
    artifacts_ignore_content: str | None = None
    #: Commands run before the agent; a non-zero exit fails the query.
    pre_agent_invocation_commands: list[CommandInterface] | None = None
    #: Commands run after the agent; a non-zero exit fails the query.
    post_agent_invocation_commands: list[CommandInterface] | None = None
    #: Files downloaded into the sandbox first.
    pre_agent_downloadables: list[RuntimeEnvironmentDownloadableInterface] | None = None
    #: Awaited for each assistant message.
    on_assistant_message: OnAssistantMessageCallback | None = None
    #: Awaited for each chunk of pre/post command output.
    on_command_output: OnCommandOutputCallback | None = None
    #: Awaited for each artifact upload request; returns where to upload.
    on_artifact_upload_request: OnArtifactUploadRequestCallback | None = None
    #: Overall limit of the call; expiry raises the builtin ``TimeoutError``.
    timeout: float | None = None
    #: Longest wait for the next runtime message (heartbeats count); expiry raises
    #: :class:`AgentRuntimeError` with ``metadata["timeout_type"] == "idle_timeout"``.
    idle_timeout: float | None = None
    #: Longest run of one ``on_assistant_message`` call.
    assistant_callback_timeout: float | None = None
    #: Longest run of one ``on_artifact_upload_request`` call.
    artifact_upload_callback_timeout: float | None = None
    #: Logger of this call; the package's logger when ``None``.
    logger: logging.Logger | None = None

    def __post_init__(self) -> None:
        _check_artifact_pairing(self.artifacts_dirs, self.on_artifact_upload_request)


@dataclass
class ExecuteCommandsOptions:
    """Options of :meth:`RuntimeUseClient.execute_commands` (shell commands, no agent).

    The runtime stops after the first command that exits non-zero and reports every
    command that ran. By default that result is returned as it is (inspect
    ``result.results[i].exit_code``); with ``check=True`` a non-zero exit raises
    :class:`AgentRuntimeError` whose ``metadata`` carries ``command``, ``exit_code`` and
    all ``results``.
    """

    #: Values the runtime replaces by ``[REDACTED]`` in everything it sends back.
    secrets_to_redact: list[str] = field(default_factory=list)
    #: Caller-defined id, shown in the runtime's logs.
    source_id: str | None = None
    #: Sandbox directories watched for artifacts (for the rest of the connection).
    artifacts_dirs: list[str] | None = None
    #: Gitignore-syntax rules for every directory of ``artifacts_dirs``.
    artifacts_ignore_content: str | None = None
    #: Files downloaded into the sandbox before the commands run.
    pre_execution_downloadables: list[RuntimeEnvironmentDownloadableInterface] | None = None
    #: Awaited for each assistant message (none are sent for commands today).
    on_assistant_message: OnAssistantMessageCallback | None = None
    #: Awaited for each chunk of command output.
    on_command_output: OnCommandOutputCallback | None = None
    #: Awaited for each artifact upload request; returns where to upload.
    on_artifact_upload_request: OnArtifactUploadRequestCallback | None = None
    #: Overall limit of the call; expiry raises the builtin ``TimeoutError``.
    timeout: float | None = None
    #: Longest wait for the next runtime message (heartbeats count).
    idle_timeout: float | None = None
    #: Longest run of one ``on_assistant_message`` call.
    assistant_callback_timeout: float | None = None
    #: Longest run of one ``on_artifact_upload_request`` call.
    artifact_upload_callback_timeout: float | None = None
    #: Logger of this call; the package's logger when ``None``.
    logger: logging.Logger | None = None
    #: Raise :class:`AgentRuntimeError` when a command exits non-zero (default: return
    #: the results).
    check: bool = False

    def __post_init__(self) -> None:
        _check_artifact_pairing(self.artifacts_dirs, self.on_artifact_upload_request)
