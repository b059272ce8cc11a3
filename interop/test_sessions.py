"""Persistent sessions: several calls on one connection and the end_session drain."""

from runtimeuse_client import CommandInterface, RuntimeUseClient

from _support import ArtifactHandler, exec_options, query_options, real, upload_path


async def test_two_sequential_queries_share_one_session(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        first = await session.query(prompt="ECHO:first", options=query_options())
        second = await session.query(prompt="STREAM:2", options=query_options())
        commands = await session.execute_commands(
            commands=[CommandInterface(command="echo third")], options=exec_options()
        )
    assert first.data.text == "first"
    assert second.data.text == "streamed 2 messages"
    assert commands.results[0].stdout == "third\n"


async def test_session_error_does_not_poison_the_next_call(runtime):
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        try:
            await session.query(prompt="ERROR:first fails", options=query_options())
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "error", None) == "first fails"
        else:
            raise AssertionError("expected AgentRuntimeError")
        result = await session.query(prompt="ECHO:second works", options=query_options())
    assert result.data.text == "second works"


async def test_late_artifact_is_uploaded_before_session_closes(start_runtime, http_server, tmp_path):
    # Grace longer than the writer's delay: the drain must wait for the late file.
    rt = start_runtime("--heartbeat-interval", "0.2", "--artifact-grace", "1.5")
    adir = tmp_path / "late-artifacts"
    late = adir / "late.txt"
    handler = ArtifactHandler(http_server, "text/plain")
    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        result = await session.execute_commands(
            commands=[CommandInterface(
                command=f"(sleep 0.5; echo late > {late}) >/dev/null 2>&1 &"
            )],
            options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
        )
        assert result.results[0].exit_code == 0
        assert not late.exists(), "the file must appear only after the request finished"
    # end_session_confirm only comes after outstanding uploads: no waiting needed here.
    assert late.read_text() == "late\n"
    assert handler.filepaths() == [real(late)]
    assert [(p.path, p.body) for p in http_server.puts] == [(upload_path(real(late)), b"late\n")]


async def test_session_late_artifact_after_query_uses_last_callback(start_runtime, http_server, tmp_path):
    rt = start_runtime("--heartbeat-interval", "0.2", "--artifact-grace", "1.5")
    adir = tmp_path / "after-query"
    late = adir / "after.txt"
    handler = ArtifactHandler(http_server, "text/plain")
    client = RuntimeUseClient(ws_url=rt.url)
    async with client.session() as session:
        result = await session.query(
            prompt="ECHO:started",
            options=query_options(
                artifacts_dirs=[str(adir)],
                on_artifact_upload_request=handler,
                post_agent_invocation_commands=[CommandInterface(
                    command=f"(sleep 0.4; echo after > {late}) >/dev/null 2>&1 &"
                )],
            ),
        )
        assert result.data.text == "started"
    assert [(p.path, p.body) for p in http_server.puts] == [(upload_path(real(late)), b"after\n")]
