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
IDLE_RSS_LIMIT_KB = 6 * 1024
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


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB$", status, re.M).group(1))


def rss_by_mapping(pid: int) -> list[tuple[int, str]]:
    """Resident kB per mapped file (or [heap], [stack], anonymous), largest first."""
    totals: dict[str, int] = {}
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            fields = line.split()
            name = f"{fields[5] if len(fields) > 5 else '[anonymous]'} {fields[1]}"
        elif line.startswith("Rss:"):
            totals[name] = totals.get(name, 0) + int(line.split()[1])
    return sorted(((kb, n) for n, kb in totals.items() if kb), reverse=True)


def drop_cached_pages(binary: Path) -> None:
    """Writes the binary's pages out and drops them from the page cache, so that it starts
    the way a sandbox starts it (from disk, not from pages just written). Pages already
    cached may sit in large folios, which the kernel maps whole at the first touch: the
    same binary then reads up to 1.7 MB more RSS, all of it clean, shared page cache."""
    fd = os.open(binary, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def assert_idles_under_limit(pid: int) -> None:
    """Resident memory of a started, ready and idle runtime is under the limit. Sampled a
    few times; the median counts, so one sample taken mid-page-fault cannot decide it."""
    samples = []
    for _ in range(5):
        time.sleep(0.2)
        samples.append(rss_kb(pid))
    median = sorted(samples)[len(samples) // 2]
    breakdown = "\n".join(f"{kb:6d} kB  {name}" for kb, name in rss_by_mapping(pid))
    assert median < IDLE_RSS_LIMIT_KB, f"idle RSS {samples} kB; by mapping:\n{breakdown}"


def test_binary_idles_under_6_mb_rss_after_start(installed_binary, start):
    """The shipped binary, started and ready, holds under 6 MB resident: its own pages
    (code and data it touched, and what the kernel read around them), the C library's,
    heap and stacks."""
    drop_cached_pages(installed_binary)
    runtime = start([str(installed_binary), *SERVE])
    assert_idles_under_limit(runtime.proc.pid)


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
