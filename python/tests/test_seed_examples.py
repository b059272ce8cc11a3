"""Every Python code block of the seed README, run against the real runtime (echo agent).

What a sandbox provides in the README is replaced by local equivalents: the runtime runs
on 127.0.0.1, the codex archive is a small zip served from loopback, the work directory is
a temporary one, and prompts are written for the echo agent (`STRUCTURED:` for the
structured example, `SLOW:` for the one that gets cancelled). The model name is ignored
by the echo agent. Otherwise the code is the README's.
"""

from __future__ import annotations

import ast
import asyncio
import io
import json
import mimetypes
import zipfile

import pytest

from _support import real, upload_path


def codex_zip() -> bytes:
    """A stand-in for codex's main.zip: a top-level folder with a few files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("codex-main/README.md", "# Codex\n")
        zf.writestr("codex-main/src/main.rs", "fn main() {}\n")
        zf.writestr("codex-main/AGENTS.md", "be nice\n")
    return buf.getvalue()


async def test_quick_start(runtime, http_server, tmp_path, capsys):
    zip_url = http_server.serve("/openai/codex/archive/refs/heads/main.zip", codex_zip())
    from runtimeuse_client import (
        AssistantMessageInterface,
        QueryOptions,
        RuntimeEnvironmentDownloadableInterface,
        RuntimeUseClient,
        StructuredOutputResult,
        TextResult,
    )

    WORKDIR = str(tmp_path / "runtimeuse")

    async def main():
        # In the README a sandbox starts the runtime; here the `runtime` fixture did.
        ws_url = runtime.url

        client = RuntimeUseClient(ws_url=ws_url)

        async def on_assistant(msg: AssistantMessageInterface) -> None:
            for block in msg.text_blocks:
                print(f"[assistant] {block}")

        # Text response (no output schema)
        result = await client.query(
            prompt="STREAM_TEXT:Summarize the contents of the codex repository and list your favorite file in the repository.",
            options=QueryOptions(
                system_prompt="You are a helpful assistant.",
                model="gpt-4.1",
                on_assistant_message=on_assistant,
                pre_agent_downloadables=[
                    RuntimeEnvironmentDownloadableInterface(
                        download_url=zip_url,
                        working_dir=WORKDIR,
                    )
                ],
            ),
        )
        assert isinstance(result.data, TextResult)
        print(result.data.text)

        # Structured response (with output schema)
        result = await client.query(
            prompt='STRUCTURED:{"file_count": 3, "char_count": 30}',
            options=QueryOptions(
                system_prompt="You are a helpful assistant.",
                model="gpt-4.1",
                pre_agent_downloadables=[
                    RuntimeEnvironmentDownloadableInterface(
                        download_url=zip_url,
                        working_dir=WORKDIR,
                    )
                ],
                output_format_json_schema_str="""
{
  "type": "json_schema",
  "schema": {
    "type": "object",
    "properties": {
      "file_count": { "type": "integer" },
      "char_count": { "type": "integer" }
    },
    "required": ["file_count", "char_count"],
    "additionalProperties": false
  }
}
""",
            ),
        )
        assert isinstance(result.data, StructuredOutputResult)
        print(result.data.structured_output)
        print(result.metadata)  # execution metadata

    # The README ends with asyncio.run(main()); the test already runs in an event loop.
    await main()

    out = capsys.readouterr().out.splitlines()
    summary = "Summarize the contents of the codex repository and list your favorite file in the repository."
    assert out[0] == f"[assistant] {summary}"
    assert out[1] == "done"
    assert ast.literal_eval(out[2]) == {"file_count": 3, "char_count": 30}
    assert out[3].startswith("{")  # the metadata dict
    assert (tmp_path / "runtimeuse" / "codex-main" / "src" / "main.rs").read_text() == "fn main() {}\n"
    assert not (tmp_path / "runtimeuse" / "main.zip").exists()


async def test_local_development_without_a_sandbox(runtime):
    from runtimeuse_client import QueryOptions, RuntimeUseClient

    client = RuntimeUseClient(ws_url=f"ws://localhost:{runtime.port}")

    result = await client.query(
        prompt="ECHO:local", options=QueryOptions(system_prompt="s", model="gpt-4.1")
    )
    assert result.data.text == "local"


async def test_usage_query_with_every_option(runtime, http_server, tmp_path, capsys):
    from runtimeuse_client import (
        ArtifactUploadRequestMessageInterface,
        ArtifactUploadResult,
        AssistantMessageInterface,
        CommandInterface,
        CommandOutputMessageInterface,
        QueryOptions,
        RuntimeEnvironmentDownloadableInterface,
        RuntimeUseClient,
        StructuredOutputResult,
        TextResult,
    )

    downloadable = RuntimeEnvironmentDownloadableInterface(
        download_url=http_server.serve("/codex.zip", codex_zip()),
        working_dir=str(tmp_path / "work"),
    )
    artifacts = tmp_path / "artifacts"
    seen: dict[str, list] = {"assistant": [], "output": [], "artifacts": []}

    async def on_assistant(msg: AssistantMessageInterface) -> None:
        seen["assistant"].append(msg.text_blocks)

    async def on_command_output(msg: CommandOutputMessageInterface) -> None:
        seen["output"].append((msg.stream, msg.text))

    async def on_artifact(req: ArtifactUploadRequestMessageInterface) -> ArtifactUploadResult:
        seen["artifacts"].append(req.filename)
        return ArtifactUploadResult(
            presigned_url=http_server.url + upload_path(req.filepath), content_type="text/plain"
        )

    client = RuntimeUseClient(ws_url=runtime.url)

    result = await client.query(
        prompt='STRUCTURED:{"summary": "a codex"}',
        options=QueryOptions(
            system_prompt="You are a helpful assistant.",
            model="gpt-4.1",
            agent_env={"MY_VAR": "value"},               # optional -- env vars for the agent
            pre_agent_downloadables=[downloadable],          # optional
            output_format_json_schema_str='{"type": "json_schema", "schema": {"type": "object"}}',
            on_assistant_message=on_assistant,            # optional -- agent text blocks
            on_command_output=on_command_output,          # optional -- pre/post command stdout/stderr
            # The README's snippet omits artifacts_dirs, which must come with the callback.
            artifacts_dirs=[str(artifacts)],
            on_artifact_upload_request=on_artifact,       # optional -- return ArtifactUploadResult
            post_agent_invocation_commands=[CommandInterface(
                command=f"echo report > {artifacts}/report.txt; sleep 0.5; echo post"
            )],
            timeout=300,                                  # optional -- seconds
        ),
    )

    if isinstance(result.data, TextResult):
        print(result.data.text)
    elif isinstance(result.data, StructuredOutputResult):
        print(result.data.structured_output)

    print(result.metadata)  # execution metadata

    assert ast.literal_eval(capsys.readouterr().out.splitlines()[0]) == {"summary": "a codex"}
    assert ("stdout", "post\n") in seen["output"]
    assert seen["artifacts"] == ["report.txt"]
    put = await asyncio.to_thread(http_server.wait_for_put, upload_path(real(artifacts / "report.txt")))
    assert put.body == b"report\n"


def test_usage_snippet_as_written_is_refused_for_missing_artifacts_dirs():
    from runtimeuse_client import QueryOptions

    async def on_artifact(req):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="must be specified together"):
        QueryOptions(system_prompt="s", model="gpt-4.1", on_artifact_upload_request=on_artifact)


async def test_command_only_execution(runtime, tmp_path, capsys):
    from runtimeuse_client import (
        CommandInterface,
        ExecuteCommandsOptions,
        RuntimeUseClient,
    )

    app = tmp_path / "app"
    chunks = []

    async def on_command_output(msg) -> None:
        chunks.append(msg.text)

    client = RuntimeUseClient(ws_url=runtime.url)

    result = await client.execute_commands(
        commands=[
            CommandInterface(command=f"mkdir -p {app}/output"),
            CommandInterface(command=f"echo 'sandbox is ready' > {app}/output/status.txt"),
            CommandInterface(command=f"cat {app}/output/status.txt", env={"MY_VAR": "value"}),
        ],
        options=ExecuteCommandsOptions(
            on_command_output=on_command_output,  # optional -- streams stdout/stderr
        ),
    )

    for item in result.results:
        print(f"{item.command} -> exit code {item.exit_code}")

    assert capsys.readouterr().out.splitlines() == [
        f"mkdir -p {app}/output -> exit code 0",
        f"echo 'sandbox is ready' > {app}/output/status.txt -> exit code 0",
        f"cat {app}/output/status.txt -> exit code 0",
    ]
    assert "".join(chunks) == "sandbox is ready\n"


async def test_artifact_upload_handshake(runtime, http_server, tmp_path):
    from runtimeuse_client import (
        ArtifactUploadRequestMessageInterface,
        ArtifactUploadResult,
        QueryOptions,
        RuntimeUseClient,
    )

    class Storage:  # the README's `my_storage`, backed by the loopback server
        async def create_presigned_url(self, filename: str) -> str:
            return f"{http_server.url}/bucket/{filename}"

    my_storage = Storage()

    def guess_content_type(filename: str) -> str:
        return mimetypes.guess_type(filename)[0] or "application/octet-stream"

    async def on_artifact(request: ArtifactUploadRequestMessageInterface) -> ArtifactUploadResult:
        presigned_url = await my_storage.create_presigned_url(request.filename)
        content_type = guess_content_type(request.filename)
        return ArtifactUploadResult(presigned_url=presigned_url, content_type=content_type)

    adir = tmp_path / "out"
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt=f'WRITE_FILE:{adir}/data.json {json.dumps({"ok": True})}',
        options=QueryOptions(
            system_prompt="s",
            model="gpt-4.1",
            artifacts_dirs=[str(adir)],
            on_artifact_upload_request=on_artifact,
        ),
    )
    put = await asyncio.to_thread(http_server.wait_for_put, "/bucket/data.json")
    assert put.content_type == "application/json"
    assert json.loads(put.body) == {"ok": True}


async def test_cancellation(runtime, capsys):
    from runtimeuse_client import CancelledException, QueryOptions, RuntimeUseClient

    client = RuntimeUseClient(ws_url=runtime.url)

    async def cancel_after_delay(client, seconds):
        await asyncio.sleep(seconds)
        client.abort()

    try:
        asyncio.create_task(cancel_after_delay(client, 0.3))
        result = await client.query(
            prompt="SLOW:30000",
            options=QueryOptions(
                system_prompt="You are a helpful assistant.",
                model="gpt-4.1",
            ),
        )
    except CancelledException:
        print("Run was cancelled")

    assert capsys.readouterr().out == "Run was cancelled\n"


def test_api_reference_names_are_importable():
    import runtimeuse_client

    types = [
        "QueryOptions", "QueryResult", "ResultMessageInterface", "TextResult",
        "StructuredOutputResult", "AssistantMessageInterface",
        "ArtifactUploadRequestMessageInterface", "ArtifactUploadResponseMessageInterface",
        "ErrorMessageInterface", "ExecuteCommandsOptions", "CommandExecutionResult",
        "CommandResultItem", "CommandInterface", "RuntimeEnvironmentDownloadableInterface",
    ]
    exceptions = ["AgentRuntimeError", "CancelledException"]
    beyond_the_table = [
        "RuntimeUseClient", "RuntimeUseSession", "CommandOutputMessageInterface",
        "HeartbeatMessageInterface", "ArtifactUploadResult",
    ]
    for name in types + exceptions + beyond_the_table:
        assert hasattr(runtimeuse_client, name), name
        assert name in runtimeuse_client.__all__, name
    assert issubclass(runtimeuse_client.AgentRuntimeError, Exception)
    assert issubclass(runtimeuse_client.CancelledException, Exception)
