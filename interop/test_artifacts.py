"""Artifact upload handshake: request → presigned URL → HTTP PUT on the loopback server."""

import asyncio

from runtimeuse_client import CommandInterface, RuntimeUseClient

from _support import ArtifactHandler, exec_options, query_options, real, upload_path

CONTENT_TYPE = "application/x-interop-test"


async def wait_put(server, path):
    return await asyncio.to_thread(server.wait_for_put, upload_path(real(path)))


async def test_write_file_artifact_is_put_with_body_and_content_type(runtime, http_server, tmp_path):
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"WRITE_FILE:{adir}/out.txt hello",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert result.data.text == f"wrote {adir}/out.txt"
    assert [(r.filename, r.filepath) for r in handler.requests] == [
        ("out.txt", real(adir / "out.txt"))
    ]
    put = await wait_put(http_server, adir / "out.txt")
    assert put.body == b"hello"
    assert put.content_type == CONTENT_TYPE


async def test_write_file_returns_only_after_its_artifact_is_uploaded(
    runtime, http_server, tmp_path
):
    # The reference echo handler sleeps 3 s after writing, so clients (and the reference
    # e2e suite) see the upload done when the query returns. Returning earlier is also
    # unsafe with runtimeuse-client 0.15.1: it stops its sender as soon as the terminal
    # arrives, so an upload response it queued just before can be dropped.
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt=f"WRITE_FILE:{adir}/done.txt finished",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert [(p.path, p.body) for p in http_server.puts] == [
        (upload_path(real(adir / "done.txt")), b"finished")
    ]


async def test_write_file_returns_only_after_its_artifact_is_uploaded(
    runtime, http_server, tmp_path
):
    # The reference echo handler sleeps 3 s after writing, so clients (and the reference
    # e2e suite) see the upload done when the query returns. Returning earlier is also
    # unsafe with runtimeuse-client 0.15.1: it stops its sender as soon as the terminal
    # arrives, so an upload response it queued just before can be dropped.
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt=f"WRITE_FILE:{adir}/done.txt finished",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert [(p.path, p.body) for p in http_server.puts] == [
        (upload_path(real(adir / "done.txt")), b"finished")
    ]


async def test_artifact_is_uploaded_when_presign_callback_is_slow(runtime, http_server, tmp_path):
    # Presigning usually means a network call. While the callback runs, the runtime must
    # not end the request: 0.15.1 drops the response it queues after the terminal arrived.
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE, delay=0.3)
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"WRITE_FILE:{adir}/slow.txt presigned slowly",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert result.data.text == f"wrote {adir}/slow.txt"
    assert len(handler.requests) == 1
    put = await asyncio.to_thread(http_server.wait_for_put,
                                  upload_path(real(adir / "slow.txt")), 5.0)
    assert put.body == b"presigned slowly"


async def test_artifact_put_sends_content_length(runtime, http_server, tmp_path):
    # Presigned S3 PUT URLs reject chunked bodies; the size must be announced up front.
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    await client.query(
        prompt=f"WRITE_FILE:{adir}/sized.txt twelve bytes",
        options=query_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    put = await wait_put(http_server, adir / "sized.txt")
    assert put.body == b"twelve bytes"
    assert put.headers.get("content-length") == "12", put.headers


async def test_file_written_by_command_execution_is_uploaded(runtime, http_server, tmp_path):
    adir = tmp_path / "out"
    target = adir / "sub" / "deep" / "made.txt"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    # The trailing sleep keeps the one-shot connection open while the handshake happens.
    result = await client.execute_commands(
        commands=[CommandInterface(
            command=f"mkdir -p {target.parent} && echo made by command > {target}; sleep 1"
        )],
        options=exec_options(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler),
    )
    assert result.results[0].exit_code == 0
    put = await wait_put(http_server, target)
    assert put.body == b"made by command\n"
    assert put.content_type == CONTENT_TYPE
    assert handler.requests[0].filename == "made.txt"


async def test_artifacts_ignore_content_excludes_matching_files(runtime, http_server, tmp_path):
    adir = tmp_path / "artifacts"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        await session.execute_commands(
            commands=[CommandInterface(command=(
                f"mkdir -p {adir}/sub && echo log > {adir}/a.log && echo keep > {adir}/b.txt"
                f" && echo log > {adir}/sub/c.log && : > {adir}/empty.txt"
            ))],
            options=exec_options(
                artifacts_dirs=[str(adir)],
                artifacts_ignore_content="*.log\n",
                on_artifact_upload_request=handler,
            ),
        )
    # The session exit drained every pending event.
    assert handler.filepaths() == [real(adir / "b.txt")]
    assert [p.path for p in http_server.puts] == [upload_path(real(adir / "b.txt"))]
    assert http_server.puts[0].body == b"keep\n"


async def test_default_ignore_list_and_artifactignore_file(runtime, http_server, tmp_path):
    default_dir = tmp_path / "default"
    custom_dir = tmp_path / "custom"
    custom_dir.mkdir()
    (custom_dir / ".artifactignore").write_text("*.tmp\n")
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        await session.execute_commands(
            commands=[CommandInterface(command=(
                f"mkdir -p {default_dir}/node_modules/pkg {default_dir}/__pycache__"
                f" && echo js > {default_dir}/node_modules/pkg/index.js"
                f" && echo pyc > {default_dir}/__pycache__/m.pyc"
                f" && echo kept > {default_dir}/kept.txt"
                f" && echo scratch > {custom_dir}/x.tmp && echo real > {custom_dir}/y.txt"
            ))],
            options=exec_options(
                artifacts_dirs=[str(default_dir), str(custom_dir)],
                on_artifact_upload_request=handler,
            ),
        )
    uploaded = set(handler.filepaths())
    assert real(default_dir / "kept.txt") in uploaded
    assert real(custom_dir / "y.txt") in uploaded
    assert real(default_dir / "node_modules" / "pkg" / "index.js") not in uploaded
    assert real(default_dir / "__pycache__" / "m.pyc") not in uploaded
    assert real(custom_dir / "x.tmp") not in uploaded


async def test_sequential_queries_in_session_upload_each_version(runtime, http_server, tmp_path):
    adir = tmp_path / "artifacts"
    target = adir / "v.txt"
    handler = ArtifactHandler(http_server, CONTENT_TYPE)
    opts = dict(artifacts_dirs=[str(adir)], on_artifact_upload_request=handler)
    client = RuntimeUseClient(ws_url=runtime.url)
    async with client.session() as session:
        first = await session.query(prompt=f"WRITE_FILE:{target} one",
                                    options=query_options(**opts))
        # The PUT streams the file as it is when the upload starts, so let it finish
        # before the file is rewritten.
        put1 = await wait_put(http_server, target)
        second = await session.query(prompt=f"WRITE_FILE:{target} two",
                                     options=query_options(**opts))
        put2 = await asyncio.to_thread(http_server.wait_for_put, upload_path(real(target)),
                                       10.0, 2)
        third = await session.query(prompt="ECHO:plain", options=query_options())
    assert first.data.text == f"wrote {target}"
    assert second.data.text == f"wrote {target}"
    assert third.data.text == "plain"
    assert (put1.body, put2.body) == (b"one", b"two")
    assert len([p for p in http_server.puts if p.path == upload_path(real(target))]) == 2
