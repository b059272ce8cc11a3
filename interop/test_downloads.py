"""pre_agent_downloadables / pre_execution_downloadables from a loopback HTTP server."""

import io
import os
import stat
import zipfile

import pytest
from runtimeuse_client import (
    AgentRuntimeError,
    CommandInterface,
    RuntimeEnvironmentDownloadableInterface,
    RuntimeUseClient,
)

from _support import exec_options, query_options


def downloadable(url: str, working_dir) -> RuntimeEnvironmentDownloadableInterface:
    return RuntimeEnvironmentDownloadableInterface(download_url=url, working_dir=str(working_dir))


def build_zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


async def test_downloaded_file_is_readable_by_the_agent(runtime, http_server, tmp_path):
    url = http_server.serve("/files/data.txt", b"downloaded content\n")
    workdir = tmp_path / "dl" / "nested"  # created by the runtime
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"READ_FILE:{workdir}/data.txt",
        options=query_options(pre_agent_downloadables=[downloadable(url, workdir)]),
    )
    assert result.data.text == "downloaded content\n"
    assert http_server.state.gets == ["/files/data.txt"]


async def test_download_file_name_is_percent_decoded_last_path_segment(
    runtime, http_server, tmp_path
):
    url = http_server.serve("/a/b/my%20report.txt", b"spaced")
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"READ_FILE:{tmp_path}/my report.txt",
        options=query_options(pre_agent_downloadables=[downloadable(url, tmp_path)]),
    )
    assert result.data.text == "spaced"


async def test_several_downloads_happen_in_order_before_commands(runtime, http_server, tmp_path):
    urls = [http_server.serve(f"/f{i}.txt", f"file {i}\n".encode()) for i in range(3)]
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.execute_commands(
        commands=[CommandInterface(command="cat f0.txt f1.txt f2.txt", cwd=str(tmp_path))],
        options=exec_options(
            pre_execution_downloadables=[downloadable(u, tmp_path) for u in urls]
        ),
    )
    assert result.results[0].stdout == "file 0\nfile 1\nfile 2\n"
    assert http_server.state.gets == ["/f0.txt", "/f1.txt", "/f2.txt"]


async def test_zip_download_is_extracted_and_removed(runtime, http_server, tmp_path):
    archive = build_zip({
        "repo/README.md": (b"# hello from zip\n", 0o644),
        "repo/bin/run.sh": (b"#!/bin/sh\necho ran\n", 0o755),
    })
    url = http_server.serve("/archives/repo.zip", archive)
    workdir = tmp_path / "unzipped"
    client = RuntimeUseClient(ws_url=runtime.url)
    result = await client.query(
        prompt=f"READ_FILE:{workdir}/repo/README.md",
        options=query_options(pre_agent_downloadables=[downloadable(url, workdir)]),
    )
    assert result.data.text == "# hello from zip\n"
    assert not (workdir / "repo.zip").exists(), "the archive must be deleted after extraction"
    script = workdir / "repo" / "bin" / "run.sh"
    assert os.stat(script).st_mode & 0o111, "unix permission bits must be kept"

    ran = await client.execute_commands(
        commands=[CommandInterface(command="./repo/bin/run.sh", cwd=str(workdir))],
        options=exec_options(),
    )
    assert ran.results[0].stdout == "ran\n"


async def test_zip_entry_escaping_working_dir_is_refused(runtime, http_server, tmp_path):
    archive = build_zip({"../escaped.txt": (b"evil", 0o644), "ok.txt": (b"ok", 0o644)})
    url = http_server.serve("/evil.zip", archive)
    workdir = tmp_path / "jail"
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError):
        await client.query(
            prompt="ECHO:should not run",
            options=query_options(pre_agent_downloadables=[downloadable(url, workdir)]),
        )
    assert not (tmp_path / "escaped.txt").exists()


async def test_download_404_fails_with_download_failed_error(runtime, http_server, tmp_path):
    url = http_server.url + "/missing.txt"
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.query(
            prompt="ECHO:should not run",
            options=query_options(pre_agent_downloadables=[downloadable(url, tmp_path)]),
        )
    assert info.value.error.startswith("Download failed: 404"), info.value.error


async def test_download_500_fails_command_execution(runtime, http_server, tmp_path):
    url = http_server.fail("/broken.bin", 500)
    marker = tmp_path / "ran"
    client = RuntimeUseClient(ws_url=runtime.url)
    with pytest.raises(AgentRuntimeError) as info:
        await client.execute_commands(
            commands=[CommandInterface(command=f"touch {marker}")],
            options=exec_options(pre_execution_downloadables=[downloadable(url, tmp_path)]),
        )
    assert info.value.error.startswith("Download failed: 500"), info.value.error
    assert not marker.exists()
