"""Small helpers shared by the interop tests (not fixtures; those live in conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from runtimeuse_client import (
    ArtifactUploadRequestMessageInterface,
    ArtifactUploadResult,
    AssistantMessageInterface,
    CommandOutputMessageInterface,
    ExecuteCommandsOptions,
    QueryOptions,
)

SYSTEM_PROMPT = "You are the interop test suite."
MODEL = "echo-test-model"


def query_options(**kwargs) -> QueryOptions:
    """QueryOptions with the required fields filled in and a safety timeout."""
    kwargs.setdefault("timeout", 30)
    return QueryOptions(system_prompt=SYSTEM_PROMPT, model=MODEL, **kwargs)


def exec_options(**kwargs) -> ExecuteCommandsOptions:
    kwargs.setdefault("timeout", 60)
    return ExecuteCommandsOptions(**kwargs)


class OutputRecorder:
    """An `on_command_output` callback that keeps every chunk."""

    def __init__(self, keep_text: bool = True) -> None:
        self.keep_text = keep_text
        self.chunks: list[tuple[str, str, str]] = []  # (command, stream, text)
        self.sizes: dict[str, int] = {"stdout": 0, "stderr": 0}

    async def __call__(self, msg: CommandOutputMessageInterface) -> None:
        self.sizes[msg.stream] += len(msg.text)
        self.chunks.append((msg.command, msg.stream, msg.text if self.keep_text else ""))

    def text(self, stream: str = "stdout", command: str | None = None) -> str:
        return "".join(t for c, s, t in self.chunks
                       if s == stream and (command is None or c == command))

    def commands(self) -> set[str]:
        return {c for c, _, _ in self.chunks}


class AssistantRecorder:
    def __init__(self) -> None:
        self.blocks: list[list[str]] = []

    async def __call__(self, msg: AssistantMessageInterface) -> None:
        self.blocks.append(list(msg.text_blocks))


class ArtifactHandler:
    """An `on_artifact_upload_request` callback handing out loopback presigned URLs.

    A file at absolute path P is uploaded to `<server>/upload<P>`.
    """

    def __init__(self, server, content_type: str = "text/plain; charset=utf-8",
                 delay: float = 0.0) -> None:
        self.server = server
        self.content_type = content_type
        self.delay = delay  # seconds spent "presigning", like a real storage API call
        self.requests: list[ArtifactUploadRequestMessageInterface] = []

    async def __call__(self, req: ArtifactUploadRequestMessageInterface) -> ArtifactUploadResult:
        self.requests.append(req)
        if self.delay:
            await asyncio.sleep(self.delay)
        return ArtifactUploadResult(presigned_url=self.server.url + upload_path(req.filepath),
                                    content_type=self.content_type)

    def filepaths(self) -> list[str]:
        return [r.filepath for r in self.requests]


def upload_path(filepath: str | os.PathLike) -> str:
    return "/upload" + urllib.parse.quote(str(filepath), safe="/")


def real(path: Path) -> str:
    """The path as the runtime will report it (symlinks such as /tmp resolved)."""
    return str(Path(path).resolve())


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback)
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


def http_get_json(url: str) -> tuple[int, object]:
    status, body, _ = http_get(url)
    return status, json.loads(body)


def pid_is_gone(pid: int) -> bool:
    """True when `pid` no longer exists or is a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# ---- raw WebSocket helpers

def invocation(prompt: str, **extra) -> str:
    return json.dumps({
        "message_type": "invocation_message",
        "system_prompt": SYSTEM_PROMPT,
        "user_prompt": prompt,
        "model": MODEL,
        **extra,
    })


async def recv(ws, timeout: float = 10.0) -> dict:
    """Next message that is not a heartbeat."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg.get("message_type") != "heartbeat_message":
            return msg
