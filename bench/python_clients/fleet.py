"""Many runtimes from one Python process, each client in turn: starts N real runtimes
(echo agent, each on its own loopback port), runs fleet_side.py under each client's
interpreter against all of them, and prints the figures side by side.

Usage: python fleet.py RUNTIME_BIN OURS_PYTHON PUBLISHED_PYTHON [N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compare import Runtime  # noqa: E402

ROWS = [
    ("wall_s", "wall time", "s", True),
    ("cpu_s", "client CPU time", "s", True),
    ("max_rss_mib", "client peak RSS", "MiB", True),
    ("median_loop_stall_ms", "event-loop lag, median (5 ms ticker)", "ms", True),
    ("p99_loop_stall_ms", "event-loop lag, p99", "ms", True),
    ("worst_loop_stall_ms", "event-loop lag, worst", "ms", True),
]


def side(python: str, urls: list[str]) -> dict:
    out = subprocess.run(
        [python, str(HERE / "fleet_side.py")],
        input="\n".join(urls),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise SystemExit(f"{python} fleet_side.py failed:\n{out.stdout}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    binary, ours, published = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 200
    with tempfile.TemporaryDirectory() as workdir:
        runtimes = []
        try:
            for index in range(count):
                path = Path(workdir) / f"rt{index}"
                path.mkdir()
                runtimes.append(Runtime(binary, str(path)))
            urls = [rt.url for rt in runtimes]
            results = {"ours": side(ours, urls), "published": side(published, urls)}
        finally:
            for rt in runtimes:
                rt.stop()
    calls = results["ours"]["calls"]
    print(f"One Python process, {count} runtimes at once (a session of 20 queries and one "
          f"one-shot execute_commands each: {calls} calls)")
    print(f"  {'figure':40} {'ours':>12} {'published':>12} {'ratio':>8}")
    for field, label, unit, _ in ROWS:
        a, b = results["ours"][field], results["published"][field]
        ratio = b / a if a else float("inf")
        print(f"  {label:40} {a:>9.2f} {unit:<3}{b:>9.2f} {unit:<3}{ratio:>7.2f}x")
    print("  ratio = published/ours (> 1.00x: ours is better)")


if __name__ == "__main__":
    main()
