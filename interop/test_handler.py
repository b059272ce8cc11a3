"""`--handler`: the published client against the runtime serving a handler program.

Each test runs twice: with the Python example handler (the JSON-lines protocol spoken
directly) and with the upstream-style JS handler (through the runtime's Node adapter).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CancelledException,
    RuntimeUseClient,
    StructuredOutputResult,
    TextResult,
)

from _support import AssistantRecorder, OutputRecorder, query_options
from conftest import DEFAULT_ARGS, REPO_ROOT, Runtime

# The handler for tests of how handlers are run (argv, environment), shared with the
# Rust tests.
PROBE = str(REPO_ROOT / "crates/runtimeuse-agents/tests/handler_support/probe_handler.py")

TOKEN = "interop-handler-token-Q7"

HANDLERS = {
    "python": ("python3", str(REPO_ROOT / "examples/handlers/python/handler.py")),
    "js": (str(REPO_ROOT / "examples/handlers/js/handler.mjs"),),
}

SCHEMA = json.dumps({
    "type": "json_schema",
    "schema": {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
    },
})


@pytest.fixture(scope="module", params=sorted(HANDLERS))
def handler_runtime(request, tmp_path_factory):
    """A runtime serving one of the example handlers (python, js)."""
    if request.param == "js" and shutil.which("node") is None:
        pytest.fail("node is not on PATH; the JS handler needs it")
    rt = Runtime(tmp_path_factory.mktemp(f"handler-{request.param}") / "cwd",
                 args=(*DEFAULT_ARGS, "--handler", *HANDLERS[request.param]))
    rt.handler_kind = request.param
    yield rt
    rt.terminate()


async def test_text_result(handler_runtime):
    client = RuntimeUseClient(ws_url=handler_runtime.url)
    result = await client.query(prompt="ECHO:hello handler", options=query_options())
    assert isinstance(result.data, TextResult)
    assert result.data.text == "hello handler"


async def test_structured_output_valid_and_invalid(handler_runtime):
    client = RuntimeUseClient(ws_url=handler_runtime.url)
    result = await client.query(
        prompt='STRUCTURED:{"n": 4}',
        options=query_options(output_format_json_schema_str=SCHEMA),
    )
    assert isinstance(result.data, StructuredOutputResult)
    assert result.data.structured_output == {"n": 4}

    with pytest.raises(AgentRuntimeError) as info:
        await RuntimeUseClient(ws_url=handler_runtime.url).query(
            prompt='STRUCTURED:{"n": "four"}',
            options=query_options(output_format_json_schema_str=SCHEMA),
        )
    assert info.value.metadata["error_name"] == "StructuredOutputMismatch"


async def test_assistant_messages_stream_in_order(handler_runtime):
    recorder = AssistantRecorder()
    client = RuntimeUseClient(ws_url=handler_runtime.url)
    result = await client.query(
        prompt="STREAM:4", options=query_options(on_assistant_message=recorder))
    assert recorder.blocks == [[f"message {i} of 4"] for i in range(1, 5)]
    assert result.data.text == "streamed 4 messages"


async def test_a_command_the_handler_asks_for_streams_to_the_client_redacted(handler_runtime):
    output = OutputRecorder()
    client = RuntimeUseClient(ws_url=handler_runtime.url)
    result = await client.query(
        prompt="RUN:echo value=$MY_SECRET",
        options=query_options(
            agent_env={"MY_SECRET": "tops3cret-value"},
            secrets_to_redact=["tops3cret-value"],
            on_command_output=output,
        ),
    )
    assert result.data.text == "exit=0 stdout=value=[REDACTED]\n"
    assert output.text("stdout") == "value=[REDACTED]\n"
    assert output.commands() == {"echo value=$MY_SECRET"}


async def test_an_error_reaches_the_client_with_its_metadata(handler_runtime):
    client = RuntimeUseClient(ws_url=handler_runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(prompt="ERROR:handler says no", options=query_options())
    assert info.value.error == "handler says no"
    expected_source = f"{handler_runtime.handler_kind}_handler"
    assert info.value.metadata == {"source": expected_source}


async def test_abort_cancels_a_slow_handler_and_the_runtime_goes_on(handler_runtime):
    client = RuntimeUseClient(ws_url=handler_runtime.url)

    async def abort_soon():
        await asyncio.sleep(0.5)
        client.abort()

    started = time.monotonic()
    aborter = asyncio.create_task(abort_soon())
    with pytest.raises(CancelledException):
        await client.query(prompt="SLOW:30000", options=query_options())
    await aborter
    assert time.monotonic() - started < 20
    result = await RuntimeUseClient(ws_url=handler_runtime.url).query(
        prompt="ECHO:after cancel", options=query_options())
    assert result.data.text == "after cancel"


def test_a_missing_handler_stops_the_runtime_at_start_up(tmp_path):
    with pytest.raises(pytest.fail.Exception) as info:
        Runtime(tmp_path / "cwd", args=(*DEFAULT_ARGS, "--handler", "/nonexistent/handler.mjs"))
    assert "runtime exited before it was ready" in str(info.value)
    assert "handler module /nonexistent/handler.mjs not found" in str(info.value)


def test_a_crashing_python_handler_is_a_clear_error(tmp_path):
    rt = Runtime(tmp_path / "cwd", args=(*DEFAULT_ARGS, "--handler", *HANDLERS["python"]))
    try:
        async def go():
            with pytest.raises(AgentRuntimeError) as info:
                await RuntimeUseClient(ws_url=rt.url).query(
                    prompt="CRASH:out of cheese", options=query_options())
            return info.value
        error = asyncio.run(go())
        assert "without sending a result" in error.error
        assert "out of cheese" in error.error
        assert error.metadata["error_name"] == "HandlerError"
    finally:
        rt.terminate()


def test_secrets_a_handler_prints_to_stderr_stay_out_of_logs_and_errors(tmp_path):
    # A child's stderr is logged at debug level, target runtimeuse::process.
    rt = Runtime(tmp_path / "cwd", args=(*DEFAULT_ARGS, "--handler", *HANDLERS["python"]),
                 env={"RUST_LOG": "info,runtimeuse::process=debug"})
    secret = "stderr-s3cret-4711"
    try:
        async def go():
            with pytest.raises(AgentRuntimeError) as info:
                await RuntimeUseClient(ws_url=rt.url).query(
                    prompt=f"CRASH:leaking {secret}",
                    options=query_options(secrets_to_redact=[secret]))
            return info.value
        error = asyncio.run(go())
        assert "leaking [REDACTED]" in error.error
        assert secret not in json.dumps(error.metadata)
        log = rt.stderr_text()
        assert "leaking" in log, "the handler's stderr is logged"
        assert secret not in log
    finally:
        rt.terminate()


def _query_text(url: str, prompt: str, **options) -> str:
    async def go() -> str:
        result = await RuntimeUseClient(ws_url=url).query(
            prompt=prompt, options=query_options(**options))
        return result.data.text
    return asyncio.run(go())


def test_handler_arguments_starting_with_a_hyphen_go_in_handler_arg(tmp_path):
    # Runtime options after the handler's: `--handler` stops at the next option, and
    # each `--handler-arg` adds one argument, hyphen or not, in order.
    rt = Runtime(tmp_path / "cwd", args=(
        "--handler", "python3", PROBE, "plain",
        "--handler-arg", "--verbose", "--handler-arg=-x", "--handler-arg", "--",
        *DEFAULT_ARGS,
    ))
    try:
        assert json.loads(_query_text(rt.url, "ARGV")) == ["plain", "--verbose", "-x", "--"]
    finally:
        rt.terminate()


def test_handler_arg_without_handler_is_refused(tmp_path):
    with pytest.raises(pytest.fail.Exception) as info:
        Runtime(tmp_path / "cwd", args=(*DEFAULT_ARGS, "--handler-arg", "-v"))
    assert "--handler" in str(info.value)


def test_the_handler_never_sees_the_runtime_token_or_its_settings(tmp_path):
    rt = Runtime(
        tmp_path / "cwd",
        args=(*DEFAULT_ARGS, "--handler", "python3", PROBE),
        env={"RUNTIMEUSE_TOKEN": TOKEN, "RUNTIMEUSE_KILL_GRACE": "0.5",
             "COPY_OF_TOKEN": f"Bearer {TOKEN}", "KEPT_FOR_HANDLER": "1"},
    )
    try:
        seen = json.loads(_query_text(
            f"{rt.url}/?token={TOKEN}", "ENV", agent_env={"FROM_AGENT_ENV": "yes"}))
        environ = seen["environ"]
        # The token would come back as [REDACTED] (the runtime redacts it), so look for
        # the variables, and for the redaction marker itself.
        assert not [k for k in environ if k.startswith("RUNTIMEUSE_")], environ
        assert "COPY_OF_TOKEN" not in environ
        assert "RUNTIMEUSE_" not in seen["proc"]
        assert "[REDACTED]" not in json.dumps(seen)
        assert environ["KEPT_FOR_HANDLER"] == "1"
        assert environ["FROM_AGENT_ENV"] == "yes"
        assert seen["invocation_env"]["FROM_AGENT_ENV"] == "yes"
        assert "RUNTIMEUSE_TOKEN" not in seen["invocation_env"]
    finally:
        rt.terminate()


def test_credentials_in_agent_env_come_back_redacted(tmp_path):
    rt = Runtime(tmp_path / "cwd", args=(*DEFAULT_ARGS, "--handler", "python3", PROBE))
    key = "sk-interop-handler-key-5521"
    try:
        recorder = AssistantRecorder()

        async def go():
            client = RuntimeUseClient(ws_url=rt.url)
            result = await client.query(prompt="LEAK:API_KEY", options=query_options(
                agent_env={"API_KEY": key}, secrets_to_redact=[key],
                on_assistant_message=recorder))
            with pytest.raises(AgentRuntimeError) as info:
                await RuntimeUseClient(ws_url=rt.url).query(
                    prompt="LEAK_CRASH:API_KEY", options=query_options(
                        agent_env={"API_KEY": key}, secrets_to_redact=[key]))
            return result, info.value
        result, error = asyncio.run(go())
        assert result.data.text == "result sees [REDACTED]"
        assert result.metadata["seen"] == "[REDACTED]"
        assert recorder.blocks == [["assistant sees [REDACTED]"]]
        assert "crashing with [REDACTED]" in error.error
        assert key not in error.error and key not in json.dumps(error.metadata)
        assert key not in rt.stderr_text()
    finally:
        rt.terminate()
