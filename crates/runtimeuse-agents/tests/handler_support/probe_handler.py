#!/usr/bin/env python3
"""A handler for tests of how the runtime runs handlers (not an example: see
examples/handlers/python/handler.py for that). Standard library only.

It reads the invocation and acts on the user prompt:

    ARGV            text result = JSON list of its command-line arguments
    ENV             text result = JSON {"environ": os.environ, "proc": /proc/self/environ,
                    "invocation_env": the invocation line's env}
    LEAK:<NAME>     prints the value of variable <NAME> in an assistant message, on stderr,
                    in the result text and in the result metadata
    LEAK_CRASH:<NAME>  prints the value of <NAME> on stderr and exits 3 without a result
    ESCAPE          starts `setsid sleep 300` through a shell that exits at once (an
                    orphan in a session of its own), writes its own pid and the sleep's to
                    $HANDLER_PID_FILE once the sleep has left its session, then ignores SIGTERM and waits for stdin to close
    CHATTY          writes to stderr every 50 ms and never prints a protocol line
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def send(line: dict) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def text(value: str, **metadata: object) -> None:
    send({"type": "result", "data": {"type": "text", "text": value}, "metadata": metadata})


def main() -> None:
    invocation = json.loads(sys.stdin.readline())
    prompt: str = invocation["user_prompt"]
    if prompt == "ARGV":
        text(json.dumps(sys.argv[1:]))
    elif prompt == "ENV":
        with open("/proc/self/environ", "rb") as f:
            proc = f.read().decode("utf-8", "replace")
        text(json.dumps({"environ": dict(os.environ), "proc": proc,
                         "invocation_env": invocation["env"]}))
    elif prompt.startswith("LEAK:"):
        value = os.environ[prompt[len("LEAK:"):]]
        send({"type": "assistant_message", "text_blocks": [f"assistant sees {value}"]})
        print(f"stderr sees {value}", file=sys.stderr, flush=True)
        text(f"result sees {value}", seen=value)
    elif prompt.startswith("LEAK_CRASH:"):
        value = os.environ[prompt[len("LEAK_CRASH:"):]]
        print(f"crashing with {value}", file=sys.stderr, flush=True)
        sys.exit(3)
    elif prompt == "ESCAPE":
        shell = subprocess.run(
            ["sh", "-c", "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!"],
            check=True, capture_output=True, text=True)
        escaped = int(shell.stdout.strip())
        # `$!` is known before the child has run `setsid`: on a busy machine it may not
        # have left our session yet. Report it only once it has (or after 30 s, and let
        # the test say the escape did not happen).
        deadline = time.monotonic() + 30
        while os.getsid(escaped) == os.getsid(0) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(os.environ["HANDLER_PID_FILE"] + ".tmp", "w") as f:
            f.write(f"{os.getpid()}\n{escaped}\n")
        os.rename(os.environ["HANDLER_PID_FILE"] + ".tmp", os.environ["HANDLER_PID_FILE"])
        send({"type": "assistant_message", "text_blocks": ["escaped"]})
        # Ignore the cancel line and SIGTERM: only SIGKILL stops us.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _ in sys.stdin:
            pass
        time.sleep(300)
    elif prompt == "CHATTY":
        while True:
            print("still thinking", file=sys.stderr, flush=True)
            time.sleep(0.05)
    else:
        send({"type": "error", "error": f"unknown prompt {prompt!r}"})


if __name__ == "__main__":
    main()
