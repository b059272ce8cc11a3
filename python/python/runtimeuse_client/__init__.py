"""Client of the runtimeuse agent runtime, backed by the Rust client.

Drop-in for the published ``runtimeuse-client`` API::

    from runtimeuse_client import QueryOptions, RuntimeUseClient, TextResult

    client = RuntimeUseClient(ws_url="ws://127.0.0.1:8080")
    result = await client.query(
        prompt="Summarise the repository.",
        options=QueryOptions(system_prompt="You are a helpful assistant.", model="gpt-4.1"),
    )
    assert isinstance(result.data, TextResult)
"""

from .client import RuntimeUseClient, RuntimeUseSession
from .exceptions import AgentRuntimeError, CancelledException
from .types import (
    AgentRuntimeMessageInterface,
    ArtifactUploadRequestMessageInterface,
    ArtifactUploadResponseMessageInterface,
    ArtifactUploadResult,
    AssistantMessageInterface,
    CancelMessage,
    CommandExecutionMessage,
    CommandExecutionResult,
    CommandExecutionResultMessageInterface,
    CommandInterface,
    CommandOutputMessageInterface,
    CommandResultItem,
    EndSessionConfirmMessage,
    EndSessionMessage,
    ErrorMessageInterface,
    ExecuteCommandsOptions,
    HeartbeatMessageInterface,
    InvocationMessage,
    OnArtifactUploadRequestCallback,
    OnAssistantMessageCallback,
    OnCommandOutputCallback,
    QueryOptions,
    QueryResult,
    ResultMessageInterface,
    RuntimeEnvironmentDownloadableInterface,
    StructuredOutputResult,
    TextResult,
)

__all__ = [
    "RuntimeUseClient",
    "RuntimeUseSession",
    "AgentRuntimeError",
    "CancelledException",
    "AgentRuntimeMessageInterface",
    "RuntimeEnvironmentDownloadableInterface",
    "CommandInterface",
    "InvocationMessage",
    "CommandExecutionMessage",
    "QueryOptions",
    "ExecuteCommandsOptions",
    "QueryResult",
    "CommandResultItem",
    "CommandExecutionResult",
    "ResultMessageInterface",
    "CommandExecutionResultMessageInterface",
    "TextResult",
    "StructuredOutputResult",
    "AssistantMessageInterface",
    "CommandOutputMessageInterface",
    "HeartbeatMessageInterface",
    "ArtifactUploadRequestMessageInterface",
    "ArtifactUploadResponseMessageInterface",
    "ErrorMessageInterface",
    "CancelMessage",
    "EndSessionMessage",
    "EndSessionConfirmMessage",
    "ArtifactUploadResult",
    "OnAssistantMessageCallback",
    "OnCommandOutputCallback",
    "OnArtifactUploadRequestCallback",
]
