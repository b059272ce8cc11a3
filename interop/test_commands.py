"""Pre/post-agent commands in `query` and command-only `execute_commands`."""

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CommandExecutionResult,
    CommandInterface,
    RuntimeUseClient,
)

from _support import OutputRecorder, exec_options, query_options, real


async def test_pre_command_output_is_streamed_to_on_command_output(runtime):
    out = OutputRecorder()
    pre = "echo pre-out; echo pre-err >&2"
    post = "echo post-out"
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt="ECHO:agent ran",
        options=query_options(
            pre_agent_invocation_commands=[CommandInterface(command=pre)],
            post_agent_invocation_commands=[CommandInterface(command=post)],
            on_command_output=out,
        ),
    )
    assert result.data.text == "agent ran"
    assert out.text("stdout", pre) == "pre-out\n"
    assert out.text("stderr", pre) == "pre-err\n"
    assert out.text("stdout", post) == "post-out\n"
    assert out.commands() == {pre, post}
    # Pre output comes before post output.
    assert [c for c, _, _ in out.chunks].index(post) > [c for c, _, _ in out.chunks].index(pre)


async def test_failing_pre_command_fails_the_query(runtime, tmp_path):
    marker = tmp_path / "later-command-ran"
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt=f"WRITE_FILE:{tmp_path}/agent-ran.txt x",
            options=query_options(
                pre_agent_invocation_commands=[
                    CommandInterface(command="echo about to fail; exit 3"),
                    CommandInterface(command=f"touch {marker}"),
                ],
            ),
        )
    assert info.value.error == "pre-agent command failed with exit code: 3"
    assert not marker.exists(), "commands after the failing pre command must not run"
    assert not (tmp_path / "agent-ran.txt").exists(), "the agent must not run"


async def test_failing_post_command_fails_the_query(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt="ECHO:ok",
            options=query_options(
                post_agent_invocation_commands=[CommandInterface(command="exit 7")]
            ),
        )
    assert info.value.error == "post-agent command failed with exit code: 7"


async def test_pre_command_cwd_is_created_and_env_is_merged(runtime, tmp_path):
    workdir = tmp_path / "does" / "not" / "exist"
    cmd = 'pwd; echo "$MY_VAR"; test -n "$PATH" && echo has-path'
    out = OutputRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt="ECHO:x",
        options=query_options(
            pre_agent_invocation_commands=[
                CommandInterface(command=cmd, cwd=str(workdir), env={"MY_VAR": "value 1"})
            ],
            on_command_output=out,
        ),
    )
    assert workdir.is_dir()
    assert out.text("stdout").splitlines() == [real(workdir), "value 1", "has-path"]


async def test_commands_run_in_runtime_working_directory_by_default(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command="pwd")], options=exec_options()
    )
    assert result.results[0].stdout.strip() == real(runtime.workdir)


async def test_execute_commands_returns_exit_codes_and_stdout(runtime, tmp_path):
    out = OutputRecorder()
    commands = [
        CommandInterface(command="echo one"),
        CommandInterface(command="printf 'two\\nlines\\n'; echo to-stderr >&2"),
        CommandInterface(command='echo "$GREETING from $(pwd)"', cwd=str(tmp_path),
                         env={"GREETING": "hi"}),
    ]
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=commands, options=exec_options(on_command_output=out)
    )
    assert isinstance(result, CommandExecutionResult)
    assert [r.command for r in result.results] == [c.command for c in commands]
    assert [r.exit_code for r in result.results] == [0, 0, 0]
    assert result.results[0].stdout == "one\n"
    assert result.results[1].stdout == "two\nlines\n"
    assert result.results[2].stdout == f"hi from {real(tmp_path)}\n"
    assert out.text("stdout", commands[0].command) == "one\n"
    assert out.text("stderr", commands[1].command) == "to-stderr\n"


async def test_execute_commands_stops_after_first_failing_command(runtime, tmp_path):
    marker = tmp_path / "third-ran"
    commands = [
        CommandInterface(command="echo first"),
        CommandInterface(command="echo second; exit 4"),
        CommandInterface(command=f"touch {marker}"),
    ]
    client = RuntimeUseClient(ws_url=runtime.url)
    # runtimeuse-client 0.15.1 returns the results (a failing command is not a wire error).
    result = await client.execute_commands(commands=commands, options=exec_options())
    assert [(r.command, r.exit_code) for r in result.results] == [
        ("echo first", 0),
        ("echo second; exit 4", 4),
    ]
    assert result.results[1].stdout == "second\n"
    assert not marker.exists()


async def test_command_killed_by_signal_reports_128_plus_signal(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command="kill -TERM $$")], options=exec_options()
    )
    assert result.results[0].exit_code == 128 + 15


async def test_command_output_is_streamed_while_command_runs(runtime):
    # The first line must reach the callback long before the command ends.
    import time

    seen_at: list[float] = []

    async def on_output(msg):
        seen_at.append(time.monotonic())

    started = time.monotonic()
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.execute_commands(
        commands=[CommandInterface(command="echo early; sleep 1.5; echo late")],
        options=exec_options(on_command_output=on_output),
    )
    finished = time.monotonic()
    assert seen_at, "no output streamed"
    assert seen_at[0] - started < 1.0, "first chunk arrived only when the command ended"
    assert finished - seen_at[0] > 1.0


async def test_large_command_output_arrives_completely(runtime):
    # Default runtime settings. Besides the streamed chunks this also needs the
    # command_execution_result_message (with its captured stdout) to fit the PyPI client's
    # WebSocket frame limit (websockets' default max_size, 1 MiB).
    size = 20_000_000
    out = OutputRecorder(keep_text=False)
    cmd = f"head -c {size} /dev/zero | tr '\\0' 'a'; echo done >&2"
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command=cmd)],
        options=exec_options(on_command_output=out),
    )
    assert result.results[0].exit_code == 0
    assert out.sizes["stdout"] == size
    assert out.sizes["stderr"] == len("done\n")


async def test_large_output_with_distinct_content_is_streamed_in_order(runtime):
    # 200k numbered lines (~1.3 MB): every line present, in order. Default runtime
    # settings, so the result frame must also fit the client's 1 MiB frame limit.
    lines = 200_000
    out = OutputRecorder()
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command=f"seq 1 {lines}")],
        options=exec_options(on_command_output=out),
    )
    assert result.results[0].exit_code == 0
    assert out.text("stdout") == "".join(f"{i}\n" for i in range(1, lines + 1))


async def test_large_output_streams_completely_with_small_capture_limit(start_runtime):
    # Isolates streaming from result capture: with a 64 KiB capture limit the result frame
    # stays small, so only the streamed chunks carry the 20 MB.
    rt = start_runtime("--heartbeat-interval", "0.2", "--capture-limit", "65536")
    size = 20_000_000
    out = OutputRecorder(keep_text=False)
    client = RuntimeUseClient(ws_url=rt.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command=f"head -c {size} /dev/zero | tr '\\0' 'a'")],
        options=exec_options(on_command_output=out),
    )
    assert result.results[0].exit_code == 0
    assert out.sizes["stdout"] == size
    assert 0 < len(result.results[0].stdout) <= 65536
    assert set(result.results[0].stdout) == {"a"}
