"""One-shot calls: results, errors, check=True, commands, downloads, artifacts, secrets."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CommandExecutionResult,
    CommandInterface,
    CommandResultItem,
    QueryResult,
    RuntimeEnvironmentDownloadableInterface,
    StructuredOutputResult,
    TextResult,
)

from _support import (
    ArtifactHandler,
    AssistantRecorder,
    OutputRecorder,
    exec_options,
    query_options,
    real,
    upload_path,
)

SECRET = "hunter2-s3cr3t"


async def test_text_result_is_a_pydantic_model(client):
    result = await client.query(prompt="ECHO:hello", options=query_options())
    assert isinstance(result, QueryResult)
    assert isinstance(result.data, TextResult)
    assert result.data.text == "hello"
    dumped = result.model_dump()
    assert dumped["data"] == {"type": "text", "text": "hello"}
    assert isinstance(dumped["metadata"], dict)
    assert QueryResult.model_validate(dumped) == result


async def test_structured_output_result(client):
    result = await client.query(
        prompt='STRUCTURED:{"files": [1, 2], "nested": {"ok": true, "none": null}, "f": 1.5}',
        options=query_options(output_format_json_schema_str='{"type": "object"}'),
    )
    assert isinstance(result.data, StructuredOutputResult)
    assert result.data.structured_output == {
        "files": [1, 2], "nested": {"ok": True, "none": None}, "f": 1.5,
    }
    assert result.model_dump()["data"]["type"] == "structured_output"


async def test_runtime_error_raises_agent_runtime_error(client):
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt="ERROR:it broke", options=query_options())
    assert info.value.error == "it broke"
    assert info.value.metadata == {"source": "echo_handler"}
    assert str(info.value) == 'it broke\nmetadata: {"source": "echo_handler"}'


async def test_assistant_messages_reach_the_callback_in_order(client):
    recorder = AssistantRecorder()
    result = await client.query(prompt="STREAM:5", options=query_options(on_assistant_message=recorder))
    assert recorder.blocks == [[f"message {i} of 5"] for i in range(1, 6)]
    assert result.data.text == "streamed 5 messages"


async def test_execute_commands_returns_results_including_a_failure(client, tmp_path):
    marker = tmp_path / "never"
    result = await client.execute_commands(
        commands=[
            CommandInterface(command="echo one"),
            CommandInterface(command="echo two; exit 5"),
            CommandInterface(command=f"touch {marker}"),
        ],
        options=exec_options(),
    )
    assert isinstance(result, CommandExecutionResult)
    assert all(isinstance(item, CommandResultItem) for item in result.results)
    assert result.model_dump() == {"results": [
        {"command": "echo one", "exit_code": 0, "stdout": "one\n"},
        {"command": "echo two; exit 5", "exit_code": 5, "stdout": "two\n"},
    ]}
    assert not marker.exists()


async def test_check_true_raises_with_the_results_in_metadata(client):
    with pytest.raises(AgentRuntimeError) as info:
        await client.execute_commands(
            commands=[CommandInterface(command="echo ok"), CommandInterface(command="exit 3")],
            options=exec_options(check=True),
        )
    assert info.value.error == "command failed with exit code: 3"
    assert info.value.metadata == {
        "command": "exit 3",
        "exit_code": 3,
        "results": [
            {"command": "echo ok", "exit_code": 0, "stdout": "ok\n"},
            {"command": "exit 3", "exit_code": 3, "stdout": ""},
        ],
    }


async def test_check_true_returns_results_when_every_command_succeeds(client):
    result = await client.execute_commands(
        commands=[CommandInterface(command="true"), CommandInterface(command="echo fine")],
        options=exec_options(check=True),
    )
    assert [item.exit_code for item in result.results] == [0, 0]


async def test_pre_and_post_command_output_is_streamed(client):
    out = OutputRecorder()
    await client.query(
        prompt="ECHO:x",
        options=query_options(
            pre_agent_invocation_commands=[CommandInterface(command="echo pre; echo err >&2")],
            post_agent_invocation_commands=[CommandInterface(command="echo post")],
            on_command_output=out,
        ),
    )
    assert out.text("stdout") == "pre\npost\n"
    assert out.text("stderr") == "err\n"


async def test_command_env_and_cwd(client, tmp_path):
    result = await client.execute_commands(
        commands=[CommandInterface(command='echo "$GREETING from $(pwd)"', cwd=str(tmp_path / "new"),
                                   env={"GREETING": "hi"})],
        options=exec_options(),
    )
    assert result.results[0].stdout == f"hi from {real(tmp_path / 'new')}\n"


async def test_zip_download_before_commands(client, http_server, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("pkg/data.txt", "zipped\n")
    url = http_server.serve("/pkg.zip", buf.getvalue())
    result = await client.execute_commands(
        commands=[CommandInterface(command="cat pkg/data.txt", cwd=str(tmp_path))],
        options=exec_options(pre_execution_downloadables=[
            RuntimeEnvironmentDownloadableInterface(download_url=url, working_dir=str(tmp_path))
        ]),
    )
    assert result.results[0].stdout == "zipped\n"


async def test_failed_download_raises(client, http_server, tmp_path):
    url = http_server.fail("/gone.txt", 404)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt="ECHO:x",
            options=query_options(pre_agent_downloadables=[
                RuntimeEnvironmentDownloadableInterface(download_url=url, working_dir=str(tmp_path))
            ]),
        )
    assert info.value.error.startswith("Download failed: 404")


async def test_artifact_written_by_the_agent_is_uploaded(client, http_server, tmp_path):
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, "text/markdown")
    result = await client.query(
        prompt=f"WRITE_FILE:{adir}/notes/today.md # notes",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert result.data.text == f"wrote {adir}/notes/today.md"
    assert [(r.filename, r.filepath) for r in handler.requests] == [
        ("today.md", real(adir / "notes" / "today.md"))
    ]
    assert [r.message_type for r in handler.requests] == ["artifact_upload_request_message"]
    put = await asyncio.to_thread(http_server.wait_for_put,
                                  upload_path(real(adir / "notes" / "today.md")))
    assert (put.body, put.content_type) == (b"# notes", "text/markdown")


async def test_artifact_from_command_execution_is_uploaded(client, http_server, tmp_path):
    adir = tmp_path / "out"
    handler = ArtifactHandler(http_server, "text/plain")
    await client.execute_commands(
        commands=[CommandInterface(command=f"mkdir -p {adir} && echo made > {adir}/made.txt; sleep 0.5")],
        options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    put = await asyncio.to_thread(http_server.wait_for_put, upload_path(real(adir / "made.txt")))
    assert put.body == b"made\n"


async def test_secrets_are_redacted_everywhere(client):
    out = OutputRecorder()
    result = await client.execute_commands(
        commands=[CommandInterface(command=f"echo key={SECRET}; echo {SECRET} >&2")],
        options=exec_options(secrets_to_redact=[SECRET], on_command_output=out),
    )
    assert out.text("stdout") == "key=[REDACTED]\n"
    assert out.text("stderr") == "[REDACTED]\n"
    assert result.results[0].stdout == "key=[REDACTED]\n"
    assert SECRET not in result.results[0].command

    text = await client.query(prompt=f"ECHO:say {SECRET}",
                              options=query_options(secrets_to_redact=[SECRET]))
    assert text.data.text == "say [REDACTED]"
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt=f"ERROR:leak {SECRET}",
                           options=query_options(secrets_to_redact=[SECRET]))
    assert info.value.error == "leak [REDACTED]"


async def test_source_id_and_agent_env_are_accepted(client):
    out = OutputRecorder()
    await client.query(
        prompt="ECHO:x",
        options=query_options(
            agent_env={"ONLY_FOR_AGENT": "1"},
            source_id="native-test",
            pre_agent_invocation_commands=[CommandInterface(command="echo ok")],
            on_command_output=out,
        ),
    )
    assert out.text("stdout") == "ok\n"
