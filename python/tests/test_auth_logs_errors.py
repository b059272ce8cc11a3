"""Header auth, the routing of the Rust side's log lines to Python logging, and the
exception types of connection failures (issue 12), against the real runtime."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from runtimeuse_client import AgentRuntimeError, QueryOptions, RuntimeUseClient

TOKEN = "py-token-Q7"


def options(**kw) -> QueryOptions:
    return QueryOptions(system_prompt="", model="echo", **kw)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [record.getMessage() for record in self.records]


def logger_with_records(name: str, level: int) -> tuple[logging.Logger, Records]:
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    records = Records()
    logger.handlers = [records]
    return logger, records


# --------------------------------------------------------------------------- auth


async def test_token_is_sent_as_bearer_header(start_runtime):
    rt = start_runtime("--token", TOKEN)
    client = RuntimeUseClient(ws_url=rt.url, token=TOKEN)
    assert (await client.query("ECHO:one-shot", options())).data.text == "one-shot"
    async with client.session() as session:
        assert (await session.query("ECHO:session", options())).data.text == "session"


async def test_any_header_goes_with_the_upgrade(start_runtime):
    rt = start_runtime("--token", TOKEN)
    client = RuntimeUseClient(
        ws_url=rt.url, headers={"Authorization": f"Bearer {TOKEN}", "X-Trace": "1"}
    )
    assert (await client.query("ECHO:hdr", options())).data.text == "hdr"


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_missing_or_wrong_token_is_refused_without_leaking_it(start_runtime, token):
    rt = start_runtime("--token", TOKEN)
    client = RuntimeUseClient(ws_url=rt.url, token=token)
    with pytest.raises(ConnectionError) as info:
        await client.query("ECHO:x", options())
    assert "401" in str(info.value)
    assert token is None or token not in str(info.value)
    with pytest.raises(ConnectionError):
        async with client.session():
            pass


def test_invalid_header_is_a_value_error():
    with pytest.raises(ValueError):
        RuntimeUseClient(ws_url="ws://127.0.0.1:1", headers={"bad header": "x"})


# --------------------------------------------------------------------------- exceptions


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_refused_connection_raises_connection_refused_error():
    client = RuntimeUseClient(ws_url=f"ws://127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionRefusedError):
        await client.query("ECHO:x", options())
    with pytest.raises(ConnectionRefusedError):
        async with client.session():
            pass


async def test_silent_server_raises_timeout_error_after_connect_timeout():
    # Accepts TCP (the kernel completes the handshake) but never answers the upgrade.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        client = RuntimeUseClient(ws_url=f"ws://127.0.0.1:{port}", connect_timeout=0.3)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.query("ECHO:x", options()), 30)


async def test_dropped_connection_raises_agent_runtime_error(start_runtime):
    rt = start_runtime()
    client = RuntimeUseClient(ws_url=rt.url)
    call = asyncio.ensure_future(client.query("SLOW:30000", options()))
    await asyncio.sleep(0.3)
    rt.kill()
    with pytest.raises(AgentRuntimeError) as info:
        await asyncio.wait_for(call, 30)
    assert info.value.error == "No result message received"
    assert info.value.metadata and "reason" in info.value.metadata


# --------------------------------------------------------------------------- log routing


async def test_rust_log_lines_reach_the_calls_logger(runtime):
    logger, records = logger_with_records("test.rust_lines.debug", logging.DEBUG)
    url = f"{runtime.url}/?token=secret-in-url"
    result = await RuntimeUseClient(ws_url=url).query("ECHO:x", options(logger=logger))
    assert result.data.text == "x"
    await asyncio.sleep(0)  # lines queued with the result are delivered with it
    connecting = [r for r in records.records if "connecting to the runtime" in r.getMessage()]
    assert connecting, records.lines()
    assert connecting[0].levelno == logging.DEBUG
    assert "runtimeuse_client" in connecting[0].getMessage()  # the Rust target
    assert all("secret-in-url" not in line for line in records.lines())


async def test_rust_lines_below_the_loggers_level_are_not_emitted(runtime):
    logger, records = logger_with_records("test.rust_lines.warning", logging.WARNING)
    # A DEBUG logger elsewhere raises the native side's verbosity; this call still gets
    # only what its own logger wants.
    other, _ = logger_with_records("test.rust_lines.other", logging.DEBUG)
    await RuntimeUseClient(ws_url=runtime.url).query("ECHO:y", options(logger=other))
    await RuntimeUseClient(ws_url=runtime.url).query("ECHO:y", options(logger=logger))
    await asyncio.sleep(0)
    assert records.records == []


async def test_rust_lines_go_to_the_package_logger_by_default(runtime):
    logger, records = logger_with_records("runtimeuse_client", logging.DEBUG)
    try:
        client = RuntimeUseClient(ws_url=runtime.url)
        await client.query("ECHO:z", options())
        abort_later = asyncio.get_running_loop().call_later(0.2, client.abort)
        with pytest.raises(Exception):
            await client.query("SLOW:30000", options())
        abort_later.cancel()
        for _ in range(100):  # the abort's line comes from the Rust task, soon after
            if any("request aborted" in line for line in records.lines()):
                break
            await asyncio.sleep(0.05)
        lines = records.lines()
        assert any("connecting to the runtime" in line for line in lines), lines
        assert any("request aborted" in line for line in lines), lines
    finally:
        logger.handlers = []
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
