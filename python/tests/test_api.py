"""The public API's shape: option fields and defaults, models, exceptions, bad inputs."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    ArtifactUploadResult,
    CommandExecutionResult,
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    QueryResult,
    RuntimeUseClient,
    StructuredOutputResult,
    TextResult,
)

from _support import query_options

# Field names and defaults of runtimeuse-client 0.15.1's option dataclasses.
QUERY_FIELDS = {
    "system_prompt": dataclasses.MISSING,
    "model": dataclasses.MISSING,
    "output_format_json_schema_str": None,
    "source_id": None,
    "agent_env": None,
    "secrets_to_redact": list,
    "artifacts_dirs": None,
    "artifacts_ignore_content": None,
    "pre_agent_invocation_commands": None,
    "post_agent_invocation_commands": None,
    "pre_agent_downloadables": None,
    "on_assistant_message": None,
    "on_command_output": None,
    "on_artifact_upload_request": None,
    "timeout": None,
    "idle_timeout": None,
    "assistant_callback_timeout": None,
    "artifact_upload_callback_timeout": None,
    "logger": None,
}
EXEC_FIELDS = {
    "secrets_to_redact": list,
    "source_id": None,
    "artifacts_dirs": None,
    "artifacts_ignore_content": None,
    "pre_execution_downloadables": None,
    "on_assistant_message": None,
    "on_command_output": None,
    "on_artifact_upload_request": None,
    "timeout": None,
    "idle_timeout": None,
    "assistant_callback_timeout": None,
    "artifact_upload_callback_timeout": None,
    "logger": None,
    "check": False,  # ours: raise on a non-zero exit
}


def defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory
        else:
            out[f.name] = f.default
    return out


def test_option_dataclasses_have_the_published_fields_and_defaults():
    assert defaults(QueryOptions) == QUERY_FIELDS
    assert list(defaults(QueryOptions)) == list(QUERY_FIELDS)  # positional order too
    assert defaults(ExecuteCommandsOptions) == EXEC_FIELDS
    assert list(defaults(ExecuteCommandsOptions)) == list(EXEC_FIELDS)


async def _upload(req):
    return ArtifactUploadResult(presigned_url="http://x", content_type="text/plain")


@pytest.mark.parametrize("cls", [QueryOptions, ExecuteCommandsOptions])
def test_artifacts_dirs_and_upload_callback_must_come_together(cls):
    base = {"system_prompt": "s", "model": "m"} if cls is QueryOptions else {}
    message = "artifacts_dirs and on_artifact_upload_request must be specified together"
    with pytest.raises(ValueError, match=message):
        cls(**base, artifacts_dirs=["/tmp/a"])
    with pytest.raises(ValueError, match=message):
        cls(**base, on_artifact_upload_request=_upload)
    with pytest.raises(ValueError, match=message):
        cls(**base, artifacts_dirs=[], on_artifact_upload_request=_upload)
    cls(**base, artifacts_dirs=["/tmp/a"], on_artifact_upload_request=_upload)
    cls(**base, artifacts_dirs=[])  # an empty list counts as none


def test_agent_runtime_error_carries_error_and_metadata():
    plain = AgentRuntimeError("boom")
    assert (plain.error, plain.metadata, str(plain)) == ("boom", None, "boom")
    assert plain.args == ("boom",)
    rich = AgentRuntimeError("boom", metadata={"b": 1, "a": [1, 2]})
    assert rich.metadata == {"b": 1, "a": [1, 2]}
    assert str(rich) == 'boom\nmetadata: {"a": [1, 2], "b": 1}'
    odd = AgentRuntimeError("boom", metadata={1: object})
    assert str(odd).startswith("boom\nmetadata: {")
    assert str(AgentRuntimeError("boom", metadata={})) == "boom"


def test_result_models_are_pydantic_with_the_published_shape():
    result = QueryResult(data={"type": "text", "text": "hi"}, metadata=None)
    assert isinstance(result.data, TextResult)
    assert result.model_dump() == {"metadata": None, "data": {"type": "text", "text": "hi"}}
    structured = QueryResult.model_validate(
        {"data": {"type": "structured_output", "structured_output": {"n": 1}}}
    )
    assert isinstance(structured.data, StructuredOutputResult)
    assert TextResult(text="x").type == "text"
    assert CommandInterface(command="ls").model_dump() == {"cwd": None, "command": "ls", "env": None}
    assert CommandExecutionResult(results=[{"command": "ls", "exit_code": 0}]).results[0].stdout is None


def test_client_needs_a_websocket_url():
    with pytest.raises(ValueError):
        RuntimeUseClient()
    with pytest.raises(ValueError, match="ws://"):
        RuntimeUseClient(ws_url="http://127.0.0.1:8080")
    assert RuntimeUseClient(ws_url="wss://example.invalid/path?token=t").ws_url.startswith("wss://")


async def test_unreachable_runtime_raises_connection_error(unused_tcp_port):
    client = RuntimeUseClient(ws_url=f"ws://127.0.0.1:{unused_tcp_port}")
    with pytest.raises(ConnectionError, match="could not connect"):
        await client.query(prompt="ECHO:x", options=query_options(timeout=10))
    with pytest.raises(ConnectionError):
        async with client.session():
            pass


async def test_refused_token_raises_connection_error_with_the_status(start_runtime):
    rt = start_runtime("--token", "T0K")
    with pytest.raises(ConnectionError, match="401"):
        await RuntimeUseClient(ws_url=rt.url).query(prompt="ECHO:x", options=query_options())
    ok = await RuntimeUseClient(ws_url=f"{rt.url}/?token=T0K").query(
        prompt="ECHO:let in", options=query_options()
    )
    assert ok.data.text == "let in"


async def test_a_token_in_the_url_stays_out_of_errors(unused_tcp_port, start_runtime):
    secret = "SECRET-TOKEN-123"
    client = RuntimeUseClient(ws_url=f"ws://127.0.0.1:{unused_tcp_port}/?token={secret}")
    with pytest.raises(ConnectionError) as info:
        await client.query(prompt="ECHO:x", options=query_options(timeout=10))
    assert secret not in str(info.value)
    assert f"ws://127.0.0.1:{unused_tcp_port}/?token=***" in str(info.value)
    with pytest.raises(ConnectionError) as info:
        async with client.session():
            pass
    assert secret not in str(info.value)

    with pytest.raises(ValueError) as info:
        RuntimeUseClient(ws_url=f"http://user:pw-{secret}@127.0.0.1/?token={secret}")
    assert secret not in str(info.value)

    rt = start_runtime("--token", "T0K")
    with pytest.raises(ConnectionError, match="401") as info:
        await RuntimeUseClient(ws_url=f"{rt.url}/?token={secret}").query(
            prompt="ECHO:x", options=query_options()
        )
    assert secret not in str(info.value)


async def test_output_format_that_is_not_json_is_a_value_error(client):
    with pytest.raises(ValueError, match="not JSON"):
        await client.query(
            prompt="ECHO:x", options=query_options(output_format_json_schema_str="{nope")
        )


async def test_options_logger_is_used(client, caplog):
    logger = logging.getLogger("my.app.runtimeuse")
    with caplog.at_level(logging.DEBUG, logger="my.app.runtimeuse"):
        await client.query(prompt="SLOW:500", options=query_options(logger=logger))
    # Heartbeats (every 0.2 s in tests) are logged to the call's logger.
    assert any(r.name == "my.app.runtimeuse" and "heartbeat" in r.getMessage()
               for r in caplog.records)
