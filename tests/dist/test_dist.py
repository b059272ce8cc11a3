"""The shipped artifacts, installed the way users install them, run where nothing else is:
the wheel (pip install --no-index) and the npm tarballs (npm install, npx), their binary
inside a bubblewrap root holding only the C library, a static busybox as /bin/sh and the
binary, driven by the published runtimeuse-client (PyPI 0.15.1)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from runtimeuse_client import (
    CommandInterface,
    ExecuteCommandsOptions,
    QueryOptions,
    RuntimeEnvironmentDownloadableInterface,
    RuntimeUseClient,
)

from conftest import DIST, MinimalRoot, one, require

MAX_BYTES = 15 * 1024 * 1024
GLIBC_FLOOR = (2, 17)
SERVE = ["--agent", "echo", "--host", "127.0.0.1", "--port", "0"]


def query_options(**kwargs) -> QueryOptions:
    return QueryOptions(system_prompt="You are a test.", model="echo", timeout=60, **kwargs)


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def drive(url: str, file_server, workdir_in_runtime: str) -> None:
    """A query, commands and a zip download, through the published client."""
    client = RuntimeUseClient(ws_url=url)
    result = await client.query(prompt="ECHO:hello from a minimal root", options=query_options())
    assert result.data.text == "hello from a minimal root"

    commands = [
        CommandInterface(command="echo one; echo two >&2"),
        CommandInterface(command="printf '%s\\n' \"$0\"; ls /"),
        CommandInterface(command="exit 7"),
    ]
    done = await client.execute_commands(
        commands=commands, options=ExecuteCommandsOptions(timeout=60)
    )
    assert [r.exit_code for r in done.results] == [0, 0, 7]
    assert done.results[0].stdout == "one\n"

    url_zip = file_server("/bundle.zip", make_zip({"data/greeting.txt": b"zipped hello\n"}))
    target = f"{workdir_in_runtime}/unpacked"
    result = await client.query(
        prompt=f"READ_FILE:{target}/data/greeting.txt",
        options=query_options(pre_agent_downloadables=[
            RuntimeEnvironmentDownloadableInterface(download_url=url_zip, working_dir=target)
        ]),
    )
    assert result.data.text == "zipped hello\n"


def highest_glibc(binary: Path) -> tuple[int, ...]:
    out = subprocess.run(["objdump", "-T", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)\b", out)}
    assert versions, "the binary references no versioned glibc symbol: not a glibc build?"
    return max(versions)


def test_binary_needs_glibc_2_17_at_most_and_is_under_15_mb(installed_binary):
    require("objdump")
    assert highest_glibc(installed_binary) <= GLIBC_FLOOR
    assert installed_binary.stat().st_size < MAX_BYTES


def test_bare_binary_matches_its_sha256_file():
    bare = one("runtimeuse-*-x86_64-unknown-linux-gnu")
    recorded = (bare.parent / (bare.name + ".sha256")).read_text().split()
    assert recorded[1] == bare.name
    actual = subprocess.run(["sha256sum", str(bare)], capture_output=True, text=True,
                            check=True).stdout.split()[0]
    assert recorded[0] == actual


def test_wheel_binary_prints_version_and_commit(installed_binary):
    out = subprocess.run([installed_binary, "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert re.fullmatch(r"runtimeuse \d+\.\d+\.\d+\S* \(commit [0-9a-f]{12}\)\n", out), out


async def test_wheel_binary_serves_the_published_client_in_a_minimal_root(
    installed_binary, start, file_server, tmp_path
):
    require("bwrap")
    root = MinimalRoot(installed_binary, tmp_path)
    runtime = start(root.argv(*SERVE))
    assert runtime.lines[0] == f"runtimeuse listening on ws://127.0.0.1:{runtime.port}"
    await drive(runtime.url, file_server, "/work")
    # Only what the root was given is there: the runtime saw no /usr/bin, /etc or /home.
    client = RuntimeUseClient(ws_url=runtime.url)
    done = await client.execute_commands(
        commands=[CommandInterface(command="ls /; ls /usr")],
        options=ExecuteCommandsOptions(timeout=60),
    )
    listed = done.results[0].stdout.split()
    assert "etc" not in listed and "home" not in listed and "bin" in listed, listed
    assert (tmp_path / "unpacked" / "data" / "greeting.txt").read_bytes() == b"zipped hello\n"


@pytest.fixture(scope="session")
def npm_install(tmp_path_factory) -> Path:
    """`npm install` of the local tarballs into a fresh project, with no registry reachable."""
    require("npm")
    project = tmp_path_factory.mktemp("npm-project")
    (project / "package.json").write_text('{"name": "sandbox", "version": "1.0.0", "private": true}\n')
    env = dict(os.environ, npm_config_registry="http://127.0.0.1:9/",
               npm_config_cache=str(project / ".npm-cache"), npm_config_audit="false",
               npm_config_fund="false", npm_config_update_notifier="false")
    subprocess.run(
        ["npm", "install", "--offline", "--no-audit", "--no-fund",
         str(one("runtimeuse-rs-linux-x64-[0-9]*.tgz")), str(one("runtimeuse-rs-[0-9]*.tgz"))],
        cwd=project, env=env, check=True, timeout=300,
    )
    return project


def npm_env(project: Path) -> dict:
    return dict(os.environ, npm_config_registry="http://127.0.0.1:9/", npm_config_offline="true",
                npm_config_cache=str(project / ".npm-cache"), npm_config_update_notifier="false")


def test_npm_packages_have_no_install_scripts(npm_install):
    import json
    for name in ["runtimeuse-rs", "runtimeuse-rs-linux-x64"]:
        manifest = json.loads((npm_install / "node_modules" / name / "package.json").read_text())
        scripts = manifest.get("scripts", {})
        assert not {"preinstall", "install", "postinstall"} & set(scripts), (name, scripts)


async def test_npx_starts_the_runtime_for_the_published_client(npm_install, start, file_server, tmp_path):
    runtime = start(["npx", "-y", "runtimeuse-rs", *SERVE], env=npm_env(npm_install),
                    cwd=npm_install)
    await drive(runtime.url, file_server, str(tmp_path))
    # npx exits on SIGTERM without passing it on; the launcher then stops the binary.
    runtime.stop()
    deadline = time.monotonic() + 60
    while runtime.group_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not runtime.group_alive(), "the binary outlived npx"


async def test_npm_binary_serves_the_published_client_in_a_minimal_root(
    npm_install, start, file_server, tmp_path
):
    require("bwrap")
    binary = npm_install / "node_modules" / "runtimeuse-rs-linux-x64" / "bin" / "runtimeuse"
    runtime = start(MinimalRoot(binary, tmp_path).argv(*SERVE))
    await drive(runtime.url, file_server, "/work")


def test_local_sandbox_recipe_runs_end_to_end_with_the_installed_wheel(installed_binary):
    """examples/sandboxes/local.py, the shape of every cloud recipe, against the wheel's
    binary with the published client: ready line, a query, commands, a clean SIGTERM."""
    recipe = Path(__file__).resolve().parents[2] / "examples" / "sandboxes" / "local.py"
    env = dict(os.environ, PATH=f"{installed_binary.parent}:{os.environ['PATH']}")
    done = subprocess.run(
        [sys.executable, str(recipe), "--prompt", "ECHO:recipe says hi"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: recipe says hi" in done.stdout
    assert "$ uname -a  (exit 0)" in done.stdout
