"""Python clients side by side: our ``runtimeuse_client`` (Rust core) and the published
``runtimeuse-client`` 0.15.1 (pure Python), measured in one run against the same runtime.

Usage (bench/python_clients/run builds and installs everything first):
    python compare.py RUNTIME_BIN OURS_PYTHON PUBLISHED_PYTHON [ROUNDS]

Each round runs measure.py once under each client's interpreter, taking turns (ours,
published, published, ours, ...), against one runtime started here; the report holds the
median over the rounds of each figure and the ratio published/ours (time) or
ours/published (rate), so that > 1.00x always means ours is better.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (figure, field, label, unit, lower is better)
ROWS = [
    ("session_round_trip", "median_ms", "session query round trip, median", "ms", True),
    ("session_round_trip", "p90_ms", "session query round trip, p90", "ms", True),
    ("oneshot_query", "median_ms", "one-shot query incl. connect, median", "ms", True),
    ("execute_true", "median_ms", 'execute_commands(["true"]), median', "ms", True),
    ("assistant_rate", "messages_per_s", "assistant messages/s into async callback", "/s", False),
    ("output_rate", "mib_per_s", "command output into async callback", "MiB/s", False),
    ("output_rate", "cpu_s", "  client CPU for those 64 MiB", "s", True),
    ("cpu_per_100k", "cpu_s", "client CPU per 100k assistant messages", "s", True),
]


class Runtime:
    """The real runtime binary with the echo agent on a free loopback port."""

    def __init__(self, binary: str, workdir: str) -> None:
        self.proc = subprocess.Popen(
            [binary, "--agent", "echo", "--host", "127.0.0.1", "--port", "0"],
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        port = line.rsplit(":", 1)[-1].split()[0].strip()
        if not port.isdigit():
            port = line.rsplit(" ", 1)[-1].strip()
        self.url = f"ws://127.0.0.1:{int(port)}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def run_side(python: str, url: str) -> dict:
    out = subprocess.run(
        [python, str(HERE / "measure.py"), url],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise SystemExit(f"{python} measure.py failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    binary, ours, published = sys.argv[1:4]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    results: dict[str, list[dict]] = {"ours": [], "published": []}
    with tempfile.TemporaryDirectory() as workdir:
        runtime = Runtime(binary, workdir)
        try:
            for index in range(rounds):
                order = [("ours", ours), ("published", published)]
                if index % 2:
                    order.reverse()
                for name, python in order:
                    print(f"round {index + 1}/{rounds}: {name}", file=sys.stderr)
                    results[name].append(run_side(python, runtime.url))
        finally:
            runtime.stop()

    def median(name: str, figure: str, field: str) -> float:
        return statistics.median(r[figure][field] for r in results[name])

    print(f"Python clients against one runtime ({binary}), median of {rounds} rounds")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}")
    print(f"  {'figure':44} {'ours':>12} {'published':>12} {'ratio':>8}")
    for figure, field, label, unit, lower_better in ROWS:
        a, b = median("ours", figure, field), median("published", figure, field)
        ratio = (b / a) if lower_better else (a / b)
        print(f"  {label:44} {a:>9.3f} {unit:<2} {b:>9.3f} {unit:<2} {ratio:>7.2f}x")
    print("  ratio > 1.00x: ours is better (published/ours for times and CPU, "
          "ours/published for rates)")


if __name__ == "__main__":
    main()
