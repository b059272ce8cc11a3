"""The other Linux artifacts scripts/dist builds: the fully static musl binary (run in a
bubblewrap root holding no C library at all, driven by the published client) and the
aarch64 binary (its ELF header and glibc floor; run under qemu-aarch64 when Debian's
qemu-user-static and libc6-arm64-cross are installed, as scripts/install-dist-tools does).

A release build per target costs minutes, so the test command builds only the host's
artifacts and these tests skip the targets it did not build: each target is tested only
when it is in DIST_TARGETS, the variable scripts/dist and scripts/test-dist take
(`DIST_TARGETS="x86_64-unknown-linux-gnu x86_64-unknown-linux-musl
aarch64-unknown-linux-gnu" scripts/test-dist` tests them all)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest
from runtimeuse_client import CommandInterface, ExecuteCommandsOptions, RuntimeUseClient

from conftest import DIST, Elf, MinimalRoot, one
from test_dist import MAX_BYTES, SERVE, assert_idles_under_limit, drive, drop_cached_pages

MUSL = "x86_64-unknown-linux-musl"
AARCH64 = "aarch64-unknown-linux-gnu"
AARCH64_SYSROOT = Path("/usr/aarch64-linux-gnu")  # Debian's libc6-arm64-cross
VERSION_LINE = re.compile(r"runtimeuse \d+\.\d+\.\d+\S* \(commit [0-9a-f]{12}\)\n")


def built(target: str) -> Path:
    """The bare binary for `target`, when this run built it (else the test is skipped)."""
    targets = os.environ.get("DIST_TARGETS", "x86_64-unknown-linux-gnu").split()
    if target not in targets:
        pytest.skip(f"{target} not in DIST_TARGETS (cross builds run in scripts/dist only)")
    return one(f"runtimeuse-[0-9]*-{target}")


def host_commit() -> str:
    """The commit the host's binary (always built) was built from."""
    host = one("runtimeuse-[0-9]*-x86_64-unknown-linux-gnu")
    out = subprocess.run([host, "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("(commit ")[1].rstrip(")\n")


def glibc_versions(binary: Path) -> set[tuple[int, ...]]:
    """Versions of glibc the binary needs, read from its version-needed strings (works
    for any CPU, unlike the host's objdump)."""
    found = re.findall(rb"GLIBC_(2\.[0-9]+(?:\.[0-9]+)?)\0", binary.read_bytes())
    return {tuple(int(p) for p in v.decode().split(".")) for v in found}


def test_musl_binary_is_static_and_under_15_mb():
    binary = built(MUSL)
    elf = Elf(binary)
    assert elf.machine == Elf.EM_X86_64
    assert elf.is_static, f"musl binary asks for a loader: {elf.interpreter}"
    assert not glibc_versions(binary), "the musl binary references glibc symbol versions"
    if shutil.which("file"):
        described = subprocess.run(["file", "-b", str(binary)], capture_output=True, text=True,
                                   check=True).stdout
        assert "statically linked" in described, described
    assert binary.stat().st_size < MAX_BYTES


async def test_musl_binary_serves_the_published_client_with_no_c_library(
    start, file_server, tmp_path
):
    binary = built(MUSL)
    root = MinimalRoot(binary, tmp_path)
    argv = root.argv(*SERVE)
    assert not [a for a in argv if "libc" in a or "ld-linux" in a], argv
    runtime = start(argv)
    await drive(runtime.url, file_server, "/work")
    client = RuntimeUseClient(ws_url=runtime.url)
    done = await client.execute_commands(
        commands=[CommandInterface(
            command="for d in /lib /lib64 /usr/lib; do test -e $d && echo $d; done; echo end")],
        options=ExecuteCommandsOptions(timeout=60),
    )
    assert done.results[0].stdout == "end\n", "the root holds a library directory"


def test_musl_binary_prints_the_version_and_commit_of_the_host_build():
    out = subprocess.run([built(MUSL), "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert VERSION_LINE.fullmatch(out) and f"(commit {host_commit()})" in out, out


def test_musl_binary_idles_under_6_mb_rss_after_start(start):
    binary = built(MUSL)
    drop_cached_pages(binary)
    runtime = start([str(binary), *SERVE])
    assert_idles_under_limit(runtime.proc.pid)


def test_aarch64_binary_header_glibc_floor_and_size():
    binary = built(AARCH64)
    elf = Elf(binary)
    assert elf.machine == Elf.EM_AARCH64
    assert elf.interpreter == "/lib/ld-linux-aarch64.so.1", elf.interpreter
    versions = glibc_versions(binary)
    assert versions and max(versions) <= (2, 17), sorted(versions)
    assert binary.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("target,wheel,package,platform", [
    (MUSL, "musllinux_1_2_x86_64", "runtimeuse-rs-linux-x64-musl", ["linux", "x64", "musl"]),
    (AARCH64, "manylinux2014_aarch64", "runtimeuse-rs-linux-arm64", ["linux", "arm64", "glibc"]),
])
def test_wheel_and_npm_package_carry_the_bare_binary(target, wheel, package, platform):
    bare = built(target).read_bytes()
    with zipfile.ZipFile(one(f"runtimeuse-*-py3-none-*{wheel}*.whl")) as zf:
        [script] = [n for n in zf.namelist() if n.endswith(".data/scripts/runtimeuse")]
        assert zf.read(script) == bare
    with tarfile.open(one(f"{package}-[0-9]*.tgz")) as tgz:
        manifest = json.load(tgz.extractfile("package/package.json"))
        assert [manifest["os"][0], manifest["cpu"][0], manifest["libc"][0]] == platform
        assert tgz.extractfile("package/bin/runtimeuse").read() == bare


def qemu() -> list[str]:
    emulator = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if not emulator or not (AARCH64_SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists():
        pytest.skip("qemu-aarch64 or the aarch64 C library (libc6-arm64-cross) is missing: "
                    "run scripts/install-dist-tools aarch64-unknown-linux-gnu")
    return [emulator, "-L", str(AARCH64_SYSROOT)]


def test_aarch64_binary_runs_under_qemu_and_answers_health(start):
    binary = built(AARCH64)
    emulate = qemu()
    out = subprocess.run([*emulate, str(binary), "--version"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert VERSION_LINE.fullmatch(out) and f"(commit {host_commit()})" in out, out
    runtime = start([*emulate, str(binary), *SERVE])
    with urllib.request.urlopen(f"http://127.0.0.1:{runtime.port}/health", timeout=60) as reply:
        health = json.load(reply)
    assert health["status"] == "ok" and health["agent"] == "echo", health


def test_every_release_target_has_packaging_rules_and_an_npm_package():
    """Cheap, always run: each target the release workflow builds has a rule in
    scripts/dist, and its npm package is an optional dependency of runtimeuse-rs that
    the launcher looks for."""
    root = Path(__file__).resolve().parents[2]
    workflow = (root / ".github" / "workflows" / "release.yml").read_text()
    targets = {t for line in re.findall(r"^\s+targets: (.+)$", workflow, re.M) for t in line.split()}
    assert MUSL in targets and AARCH64 in targets, targets
    rules = dict(re.findall(r"^\s+([a-z0-9_]+-[a-z0-9_-]+)\) compat=\S* (?:zig=\(\) )?npm=\(([^)]*)\)",
                            (root / "scripts" / "dist").read_text(), re.M))
    manifest = json.loads((root / "npm" / "runtimeuse-rs" / "package.json").read_text())
    launcher = (root / "npm" / "runtimeuse-rs" / "bin" / "runtimeuse.js").read_text()
    for target in sorted(targets):
        assert target in rules, f"scripts/dist has no packaging rule for {target}"
        os_name, cpu, libc = rules[target].split()
        package = f"runtimeuse-rs-{os_name}-{cpu}" + ("-musl" if libc == "musl" else "")
        assert package in manifest["optionalDependencies"], package
        assert f'"{package}"' in launcher, f"the launcher never looks for {package}"
