"""The interpreter exits cleanly whatever the package was doing (issue 12).

Each script of exit_scripts/ is a complete program, run as its own process against the
real runtime: the seed README's examples, and programs that exit with calls finished,
still running, cancelled or raised, with callbacks pending, with a loop left open or from
threads. 200 runs in all, a few at a time; every run must exit 0 without a fatal error
(the crash this guards against was SIGABRT "Fatal Python error: PyGILState_Release …
finalizing" or SIGSEGV in about a third of single-query runs).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SCRIPTS = Path(__file__).parent / "exit_scripts"
TOTAL_RUNS = 200
# The single-query script is the report's reproduction: it gets the most runs.
EXTRA_RUNS = {"exit_finished.py": 35}
PARALLEL = 4
# A hang guard only: a run normally takes well under a second.
RUN_TIMEOUT_S = 120
# What a crash at exit prints: CPython's fatal error, a Rust panic, a libc abort message.
CRASH_MARKERS = ("Fatal Python error", "panicked", "Segmentation fault", "Aborted")


def codex_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("codex-main/README.md", "# Codex\n")
    return buf.getvalue()


def plan() -> list[Path]:
    scripts = sorted(SCRIPTS.glob("*.py"))
    assert len(scripts) >= 12, scripts
    fixed = sum(EXTRA_RUNS.values())
    others = [s for s in scripts if s.name not in EXTRA_RUNS]
    per_script, rest = divmod(TOTAL_RUNS - fixed, len(others))
    runs = [s for s in scripts for _ in range(EXTRA_RUNS.get(s.name, 0))]
    for index, script in enumerate(others):
        runs += [script] * (per_script + (1 if index < rest else 0))
    assert len(runs) == TOTAL_RUNS
    return runs


def run_script(script: Path, env: dict[str, str], workdir: Path) -> tuple[Path, int, str]:
    workdir.mkdir(parents=True)
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            env={**env, "WORKDIR": str(workdir)},
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        return script, -1, f"hung for {RUN_TIMEOUT_S}s\n{e.stdout}\n{e.stderr}"
    return script, proc.returncode, proc.stdout + proc.stderr


def test_every_exit_path_exits_cleanly_200_runs(runtime, http_server, tmp_path):
    env = {
        **os.environ,
        "RUNTIMEUSE_URL": runtime.url,
        "ZIP_URL": http_server.serve("/codex/main.zip", codex_zip()),
        "PYTHONFAULTHANDLER": "1",
    }
    runs = plan()
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(
            pool.map(
                lambda item: run_script(item[1], env, tmp_path / f"run{item[0]}"),
                enumerate(runs),
            )
        )
    failures = [
        f"{script.name}: exit {code}\n{output[-3000:]}"
        for script, code, output in results
        if code != 0 or any(marker in output for marker in CRASH_MARKERS)
    ]
    assert not failures, f"{len(failures)} of {len(runs)} runs failed:\n\n" + "\n\n".join(
        failures[:5]
    )
    assert runtime.proc.poll() is None, runtime.describe()
