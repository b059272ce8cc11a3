"""`--agent claude`: the published client against the runtime driving a fake `claude`
CLI (crates/runtimeuse-agents/tests/claude_support/fake_claude.py, speaking stream-json).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CancelledException,
    RuntimeUseClient,
    StructuredOutputResult,
    TextResult,
)

from _support import AssistantRecorder, query_options
from conftest import DEFAULT_ARGS, REPO_ROOT, Runtime, runtime_binary

FAKE = str(REPO_ROOT / "crates/runtimeuse-agents/tests/claude_support/fake_claude.py")

SCHEMA = json.dumps({
    "type": "json_schema",
    "schema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
})


@pytest.fixture(scope="module")
def claude_runtime(tmp_path_factory):
    """A runtime with --agent claude and the fake CLI."""
    base = tmp_path_factory.mktemp("claude")
    rt = Runtime(base / "cwd", agent="claude", args=(*DEFAULT_ARGS, "--claude-path", FAKE),
                 env={"FAKE_CLAUDE_RECORD": str(base / "record.jsonl"),
                      "FAKE_CLAUDE_PIDS": str(base / "pids")})
    rt.base = base
    yield rt
    rt.terminate()


async def test_text_blocks_and_the_result(claude_runtime):
    recorder = AssistantRecorder()
    result = await RuntimeUseClient(ws_url=claude_runtime.url).query(
        prompt="TEXT", options=query_options(on_assistant_message=recorder))
    assert isinstance(result.data, TextResult)
    assert result.data.text == "second"
    assert recorder.blocks == [["first"], ["second"]]
    assert result.metadata["session_id"] == "fake-session-1"
    assert result.metadata["num_turns"] == 1


async def test_structured_output_valid_and_invalid(claude_runtime):
    result = await RuntimeUseClient(ws_url=claude_runtime.url).query(
        prompt='STRUCTURED:{"n": 4}', options=query_options(output_format_json_schema_str=SCHEMA))
    assert isinstance(result.data, StructuredOutputResult)
    assert result.data.structured_output == {"n": 4}
    with pytest.raises(AgentRuntimeError) as info:
        await RuntimeUseClient(ws_url=claude_runtime.url).query(
            prompt='STRUCTURED:{"n": "four"}',
            options=query_options(output_format_json_schema_str=SCHEMA))
    assert "does not match" in info.value.error


async def test_an_error_result_and_a_crash_reach_the_client(claude_runtime):
    with pytest.raises(AgentRuntimeError) as info:
        await RuntimeUseClient(ws_url=claude_runtime.url).query(
            prompt="ERROR_RESULT", options=query_options())
    assert "error_max_turns" in info.value.error
    assert info.value.metadata["error_name"] == "ClaudeError"
    with pytest.raises(AgentRuntimeError) as info:
        await RuntimeUseClient(ws_url=claude_runtime.url).query(
            prompt="CRASH", options=query_options())
    assert "boom: the fake CLI fell over" in info.value.error


async def test_the_api_key_is_redacted(claude_runtime):
    result = await RuntimeUseClient(ws_url=claude_runtime.url).query(
        prompt="ECHO_KEY",
        options=query_options(agent_env={"ANTHROPIC_API_KEY": "sk-ant-interop-secret-9"}))
    assert "sk-ant-interop-secret-9" not in result.data.text


async def test_abort_kills_the_cli_and_its_children(claude_runtime):
    pids_file = claude_runtime.base / "pids"
    client = RuntimeUseClient(ws_url=claude_runtime.url)

    async def abort_when_started():
        for _ in range(200):
            if pids_file.exists() and len(pids_file.read_text().split()) == 2:
                break
            await asyncio.sleep(0.1)
        client.abort()

    aborter = asyncio.create_task(abort_when_started())
    with pytest.raises(CancelledException):
        await client.query(prompt="SLOW", options=query_options())
    await aborter
    pids = [int(p) for p in pids_file.read_text().split()]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and
                                              "Z" not in open(f"/proc/{p}/stat").read().rsplit(")", 1)[1][:3]
                                              for p in pids):
        await asyncio.sleep(0.1)
    assert not any(os.path.exists(f"/proc/{p}") and
                   "Z" not in open(f"/proc/{p}/stat").read().rsplit(")", 1)[1][:3] for p in pids)
    result = await RuntimeUseClient(ws_url=claude_runtime.url).query(
        prompt="after abort", options=query_options())
    assert result.data.text == "after abort"


def test_a_missing_cli_stops_the_runtime_at_start_up(tmp_path):
    done = subprocess.run(
        [str(runtime_binary()), "--agent", "claude", "--claude-path", "/nonexistent/claude",
         "--host", "127.0.0.1", "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "npm install -g @anthropic-ai/claude-code" in done.stderr
    assert "runtimeuse listening" not in done.stdout
