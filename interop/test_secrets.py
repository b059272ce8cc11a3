"""secrets_to_redact: every outgoing string has the secrets replaced by [REDACTED]."""

import pytest
from runtimeuse_client import AgentRuntimeError, CommandInterface, RuntimeUseClient

from _support import AssistantRecorder, OutputRecorder, exec_options, query_options

SECRET = "s3cr3t"


async def test_secret_in_text_result_is_redacted(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"ECHO:the {SECRET}", options=query_options(secrets_to_redact=[SECRET])
    )
    assert result.data.text == "the [REDACTED]"


async def test_secrets_in_structured_output_assistant_and_error_are_redacted(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    structured = await client.query(
        prompt=f'STRUCTURED:{{"key":"x-{SECRET}-y","list":["{SECRET}"]}}',
        options=query_options(
            secrets_to_redact=[SECRET],
            output_format_json_schema_str='{"type":"json_schema","schema":{"type":"object"}}',
        ),
    )
    assert structured.data.structured_output == {"key": "x-[REDACTED]-y", "list": ["[REDACTED]"]}

    assistant = AssistantRecorder()
    await client.query(
        prompt=f"STREAM_TEXT:say {SECRET}",
        options=query_options(secrets_to_redact=[SECRET], on_assistant_message=assistant),
    )
    assert assistant.blocks == [["say [REDACTED]"]]

    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt=f"ERROR:leaked {SECRET}", options=query_options(secrets_to_redact=[SECRET])
        )
    assert info.value.error == "leaked [REDACTED]"


async def test_pre_command_output_is_redacted(runtime):
    out = OutputRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt="ECHO:x",
        options=query_options(
            secrets_to_redact=[SECRET],
            pre_agent_invocation_commands=[CommandInterface(command=f"echo {SECRET}; echo {SECRET} >&2")],
            on_command_output=out,
        ),
    )
    assert out.text("stdout") == "[REDACTED]\n"
    assert out.text("stderr") == "[REDACTED]\n"


async def test_execute_commands_output_and_result_are_redacted(runtime):
    out = OutputRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command=f"echo token={SECRET} other=hunter2")],
        options=exec_options(secrets_to_redact=[SECRET, "hunter2"], on_command_output=out),
    )
    assert out.text("stdout") == "token=[REDACTED] other=[REDACTED]\n"
    assert result.results[0].stdout == "token=[REDACTED] other=[REDACTED]\n"
    assert SECRET not in result.results[0].command


async def test_secret_split_across_two_writes_is_redacted(runtime):
    out = OutputRecorder()
    cmd = "printf 'before s3c'; sleep 0.3; printf 'r3t after\\n'"
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command=cmd)],
        options=exec_options(secrets_to_redact=[SECRET], on_command_output=out),
    )
    assert out.text("stdout") == "before [REDACTED] after\n"
    assert result.results[0].stdout == "before [REDACTED] after\n"


async def test_secret_prefix_at_end_of_output_is_flushed(runtime):
    # A tail that only *could* start a secret must still be delivered when the stream ends.
    out = OutputRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command="printf 'ends with s3c'")],
        options=exec_options(secrets_to_redact=[SECRET], on_command_output=out),
    )
    assert out.text("stdout") == "ends with s3c"
    assert result.results[0].stdout == "ends with s3c"
