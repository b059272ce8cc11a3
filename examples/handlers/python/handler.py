#!/usr/bin/env python3
"""A complete runtimeuse handler in Python (standard library only).

Serve it with:

    runtimeuse --handler python3 examples/handlers/python/handler.py

The runtime starts this program once per invocation and speaks the JSON-lines handler
protocol (docs/handler-protocol.md) over stdin/stdout. The top half of this file is a
small reusable helper (`Runtime`); the bottom half is the agent itself. Replace
`answer()` with calls to your model.

This example is deterministic, like `--agent echo`, so it doubles as the handler the
runtime's tests drive. It interprets the user prompt:

    ECHO:<text>        text result <text>
    STRUCTURED:<json>  structured output = the parsed JSON
    STREAM:<n>         n assistant messages, then text "streamed <n> messages"
    RUN:<command>      asks the runtime to run <command>; text "exit=<code> stdout=<stdout>"
    ENV:<name>         text result = the value of environment variable <name>
    INVOCATION         structured output = the invocation line as received
    ERROR:<msg>        error <msg> with metadata {"source": "python_handler"}
    SLOW:<ms>          waits <ms> (ends early on cancel), then text "done"
    CRASH:<msg>        prints <msg> to stderr and exits with status 3, without a result
    GARBAGE            prints a line that is not JSON
    SILENT             prints nothing and never ends
    anything else      text result = the prompt

With HANDLER_PID_FILE set, it writes its pid there first and, with HANDLER_GRANDCHILD=1,
starts a `sleep` child and writes that pid too (the tests check both die on cancel).

Anything meant for humans goes to stderr: stdout belongs to the protocol.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import sys
import threading
import time
from typing import Any

PROTOCOL_VERSION = 1


class Cancelled(Exception):
    """The runtime sent `cancel` (or closed our stdin)."""


class Runtime:
    """The handler's side of the protocol: one invocation, then one result or error."""

    def __init__(self) -> None:
        self._out = sys.stdout
        # Anything else printed by accident goes to stderr, not into the protocol.
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self._results: dict[str, queue.Queue[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.cancelled = threading.Event()
        first = sys.stdin.readline()
        if not first:
            raise SystemExit("no invocation on stdin")
        self.invocation: dict[str, Any] = json.loads(first)
        if self.invocation.get("protocol_version") != PROTOCOL_VERSION:
            self.error(f"this handler speaks protocol {PROTOCOL_VERSION}, got "
                       f"{self.invocation.get('protocol_version')}")
            raise SystemExit(1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in sys.stdin:
            line = json.loads(raw)
            if line.get("type") == "command_result":
                waiting = self._results.pop(line["id"], None)
                if waiting is not None:
                    waiting.put(line)
            elif line.get("type") == "cancel":
                break
        # A cancel line, or stdin closed: nobody waits for an answer any more.
        self.cancelled.set()
        for waiting in list(self._results.values()):
            waiting.put({"type": "cancel"})

    def _send(self, line: dict[str, Any]) -> None:
        with self._lock:
            self._out.write(json.dumps(line) + "\n")
            self._out.flush()

    def assistant_message(self, *text_blocks: str) -> None:
        """Sends one assistant_message to the client."""
        self._send({"type": "assistant_message", "text_blocks": list(text_blocks)})

    def run_command(self, command: str, cwd: str | None = None,
                    env: dict[str, str] | None = None,
                    timeout_ms: int | None = None) -> dict[str, Any]:
        """Has the runtime run `command` (its output streams to the client); returns the
        `command_result` line: exit_code, stdout, stderr, timed_out, or error."""
        if self.cancelled.is_set():
            raise Cancelled()
        command_id = str(next(self._ids))
        waiting: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
        self._results[command_id] = waiting
        line: dict[str, Any] = {"type": "command", "id": command_id, "command": command}
        if cwd is not None:
            line["cwd"] = cwd
        if env is not None:
            line["env"] = env
        if timeout_ms is not None:
            line["timeout_ms"] = timeout_ms
        self._send(line)
        result = waiting.get()
        if result.get("type") == "cancel":
            raise Cancelled()
        return result

    def sleep(self, seconds: float) -> None:
        """Sleeps, but raises Cancelled as soon as the request is cancelled."""
        if self.cancelled.wait(seconds):
            raise Cancelled()

    def text(self, text: str, **metadata: Any) -> None:
        """Ends the invocation with a text result."""
        self._send({"type": "result", "data": {"type": "text", "text": text},
                    "metadata": metadata})

    def structured(self, value: Any, **metadata: Any) -> None:
        """Ends the invocation with a structured output result."""
        self._send({"type": "result",
                    "data": {"type": "structured_output", "structured_output": value},
                    "metadata": metadata})

    def error(self, message: str, **metadata: Any) -> None:
        """Ends the invocation with an error."""
        self._send({"type": "error", "error": message, "metadata": metadata})


def answer(rt: Runtime) -> None:
    """The agent: turns the invocation into exactly one result or error."""
    prompt: str = rt.invocation["user_prompt"]
    print(f"handler got prompt {prompt[:60]!r}", file=sys.stderr)
    if prompt.startswith("ECHO:"):
        rt.text(prompt[len("ECHO:"):])
    elif prompt.startswith("STRUCTURED:"):
        rt.structured(json.loads(prompt[len("STRUCTURED:"):]))
    elif prompt.startswith("STREAM:"):
        count = int(prompt[len("STREAM:"):])
        for i in range(1, count + 1):
            rt.assistant_message(f"message {i} of {count}")
        rt.text(f"streamed {count} messages")
    elif prompt.startswith("RUN:"):
        result = rt.run_command(prompt[len("RUN:"):])
        if "error" in result:
            rt.error(f"command could not run: {result['error']}")
        else:
            rt.text(f"exit={result['exit_code']} stdout={result['stdout']}")
    elif prompt.startswith("ENV:"):
        rt.text(os.environ.get(prompt[len("ENV:"):], "<unset>"))
    elif prompt == "INVOCATION":
        rt.structured(rt.invocation)
    elif prompt.startswith("ERROR:"):
        rt.error(prompt[len("ERROR:"):], source="python_handler")
    elif prompt.startswith("SLOW:"):
        rt.sleep(int(prompt[len("SLOW:"):]) / 1000)
        rt.text("done")
    elif prompt.startswith("CRASH:"):
        print(prompt[len("CRASH:"):], file=sys.stderr, flush=True)
        os._exit(3)
    elif prompt == "GARBAGE":
        rt._out.write("this is not json\n")
        rt._out.flush()
        time.sleep(60)
    elif prompt == "SILENT":
        while True:
            time.sleep(60)
    else:
        rt.text(prompt)


def write_pids() -> None:
    path = os.environ.get("HANDLER_PID_FILE")
    if not path:
        return
    pids = [os.getpid()]
    if os.environ.get("HANDLER_GRANDCHILD") == "1":
        import subprocess
        pids.append(subprocess.Popen(["sleep", "600"]).pid)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(map(str, pids)) + "\n")
    os.rename(path + ".tmp", path)


def main() -> None:
    rt = Runtime()
    write_pids()
    try:
        answer(rt)
    except Cancelled:
        print("handler cancelled", file=sys.stderr)
    except Exception as exc:  # any bug of ours becomes one clear error for the client
        rt.error(f"{type(exc).__name__}: {exc}", error_name=type(exc).__name__)


if __name__ == "__main__":
    main()
