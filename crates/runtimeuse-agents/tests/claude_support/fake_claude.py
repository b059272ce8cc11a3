#!/usr/bin/env python3
"""A fake `claude` CLI speaking stream-json like Claude Code in SDK mode.

It insists on the protocol the Agent SDK follows (stream-json flags, the initialize
control request first, answered before the user turn), records what it received to
$FAKE_CLAUDE_RECORD (argv, environment, stdin lines, whether stdin was closed), and acts
out the scenario named by the user prompt's first word:

  TEXT            thinking, text, tool_use and text blocks over two lines, then success
  MANY:<n>        n assistant lines, one text block each
  STRUCTURED:<j>  success with structured_output j (parsed JSON)
  ERROR_RESULT    an error_max_turns result, then exit 1
  CRASH           "boom" on stderr, exit 3 without a result
  GARBAGE         a line that is not JSON
  SILENT          init, then nothing
  SLOW            starts a grandchild (pid written to $FAKE_CLAUDE_PIDS), then waits
  ECHO_KEY        answers with $ANTHROPIC_API_KEY (which must be redacted)
"""
import json
import os
import subprocess
import sys
import time

RECORD = os.environ.get("FAKE_CLAUDE_RECORD")
SESSION = "fake-session-1"


def record(**fields):
    if RECORD:
        with open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def fail(message, code=2):
    sys.stderr.write(f"fake claude: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def read_line():
    line = sys.stdin.readline()
    if not line:
        return None
    record(stdin=line.rstrip("\n"))
    return json.loads(line)


def assistant(blocks, model="claude-fake-1"):
    out({"type": "assistant", "session_id": SESSION, "parent_tool_use_id": None,
         "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                     "content": blocks, "usage": {"input_tokens": 3, "output_tokens": 2}}})


def result(subtype="success", is_error=False, **extra):
    line = {"type": "result", "subtype": subtype, "is_error": is_error, "duration_ms": 12,
            "duration_api_ms": 9, "num_turns": 1, "total_cost_usd": 0.0012,
            "usage": {"input_tokens": 3, "output_tokens": 2}, "modelUsage": {},
            "session_id": SESSION, "permission_denials": []}
    line.update(extra)
    out(line)


def wait_for_eof():
    while True:
        line = sys.stdin.readline()
        if not line:
            record(stdin_closed=True)
            return
        record(stdin=line.rstrip("\n"))


def main():
    args = sys.argv[1:]
    if args == ["--version"]:
        print("2.0.0 (Claude Code, fake)")
        return
    record(argv=args, env=dict(os.environ), pid=os.getpid())
    for flag in ("--verbose", "--input-format", "--output-format"):
        if flag not in args:
            fail(f"missing {flag}")
    init = read_line()
    if not init or init.get("type") != "control_request" or init["request"].get("subtype") != "initialize":
        fail(f"expected the initialize control request first, got {init!r}")
    out({"type": "control_response", "response": {"subtype": "success", "request_id": init["request_id"], "response": {"commands": []}}})
    user = read_line()
    if not user or user.get("type") != "user":
        fail(f"expected the user turn, got {user!r}")
    prompt = user["message"]["content"][0]["text"]
    model = next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), "none")
    out({"type": "system", "subtype": "init", "session_id": SESSION, "model": model, "tools": ["Bash"], "cwd": os.getcwd()})
    word, _, rest = prompt.partition(":")
    if prompt == "TEXT":
        assistant([{"type": "thinking", "thinking": "let me think"}, {"type": "text", "text": "first"}], model)
        out({"type": "user", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}})
        assistant([{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}, {"type": "text", "text": "second"}], model)
        out({"type": "stream_event", "event": {"type": "whatever"}})
        result(result="second")
    elif word == "MANY":
        for i in range(int(rest)):
            assistant([{"type": "text", "text": f"message {i}"}], model)
        result(result=f"message {int(rest) - 1}")
    elif word == "STRUCTURED":
        value = json.loads(rest)
        result(result=json.dumps(value), structured_output=value)
    elif prompt == "ERROR_RESULT":
        sys.stderr.write("fake claude: giving up after 1 turn\n")
        result(subtype="error_max_turns", is_error=True, errors=["Reached maximum number of turns (1)"])
        wait_for_eof()
        sys.exit(1)
    elif prompt == "CRASH":
        sys.stderr.write("boom: the fake CLI fell over\n")
        sys.stderr.flush()
        sys.exit(3)
    elif prompt == "GARBAGE":
        sys.stdout.write("this is not stream-json\n")
        sys.stdout.flush()
        time.sleep(60)
    elif prompt == "SILENT":
        time.sleep(300)
    elif prompt == "SLOW":
        child = subprocess.Popen(["sleep", "300"])
        with open(os.environ["FAKE_CLAUDE_PIDS"], "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n{child.pid}\n")
        assistant([{"type": "text", "text": "working"}], model)
        time.sleep(300)
    elif prompt == "ECHO_KEY":
        key = os.environ.get("ANTHROPIC_API_KEY", "")
        assistant([{"type": "text", "text": f"key is {key}"}], model)
        result(result=f"key is {key}")
    else:
        assistant([{"type": "text", "text": prompt}], model)
        result(result=prompt)
    wait_for_eof()


main()
