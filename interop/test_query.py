"""Invocations through `RuntimeUseClient.query`: text, structured output, streaming, errors."""

import json

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    QueryResult,
    RuntimeUseClient,
    StructuredOutputResult,
    TextResult,
)

from _support import AssistantRecorder, query_options

SCHEMA_WRAPPED = json.dumps({
    "type": "json_schema",
    "schema": {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    },
})


async def test_echo_prefix_returns_text_result(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(prompt="ECHO:hello", options=query_options())
    assert isinstance(result, QueryResult)
    assert isinstance(result.data, TextResult)
    assert result.data.text == "hello"
    assert isinstance(result.metadata, dict)


async def test_prompt_without_prefix_is_echoed_verbatim(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    prompt = "just a plain prompt: with colons, unicode ✓ and\nnewlines"
    result = await client.query(prompt=prompt, options=query_options())
    assert isinstance(result.data, TextResult)
    assert result.data.text == prompt


async def test_structured_prompt_with_wrapped_schema_returns_structured_output(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt='STRUCTURED:{"a":1}',
        options=query_options(output_format_json_schema_str=SCHEMA_WRAPPED),
    )
    assert isinstance(result.data, StructuredOutputResult)
    assert result.data.structured_output == {"a": 1}
    assert isinstance(result.metadata, dict)


async def test_structured_output_accepts_bare_json_schema(runtime):
    bare = json.dumps({"type": "object", "properties": {"n": {"type": "array"}}})
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt='STRUCTURED:{"n":[1,2,{"x":null}]}',
        options=query_options(output_format_json_schema_str=bare),
    )
    assert isinstance(result.data, StructuredOutputResult)
    assert result.data.structured_output == {"n": [1, 2, {"x": None}]}


async def test_stream_prompt_calls_on_assistant_message_per_message(runtime):
    assistant = AssistantRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt="STREAM:3", options=query_options(on_assistant_message=assistant)
    )
    assert assistant.blocks == [["message 1 of 3"], ["message 2 of 3"], ["message 3 of 3"]]
    assert isinstance(result.data, TextResult)
    assert result.data.text == "streamed 3 messages"


async def test_stream_text_prompt_sends_one_assistant_message(runtime):
    assistant = AssistantRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt="STREAM_TEXT:hi", options=query_options(on_assistant_message=assistant)
    )
    assert assistant.blocks == [["hi"]]
    assert result.data.text == "done"


async def test_error_prompt_raises_agent_runtime_error_with_metadata(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt="ERROR:boom", options=query_options())
    assert info.value.error == "boom"
    assert info.value.metadata == {"source": "echo_handler"}


async def test_optional_fields_sent_as_null_are_accepted(runtime):
    # The Python client serialises every unset option as JSON null (source_id, agent_env,
    # artifacts_dirs, ...); setting some of them exercises the non-null branch too.
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt="ECHO:with options",
        options=query_options(source_id="interop-1", agent_env={"A": "1"}),
    )
    assert result.data.text == "with options"


async def test_sequential_one_shot_queries_on_one_client(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    for i in range(5):
        result = await client.query(prompt=f"ECHO:{i}", options=query_options())
        assert result.data.text == str(i)
