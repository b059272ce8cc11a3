"""Process-level behaviour: health, auth, concurrency and SIGTERM."""

import asyncio
import signal
import time

import pytest
import websockets
from runtimeuse_client import CommandInterface, RuntimeUseClient
from websockets.asyncio.client import connect

from _support import exec_options, http_get_json, invocation, pid_is_gone, query_options, recv

TOKEN = "interop-token-T"


async def test_health_endpoint_answers_json(runtime):
    status, body = await asyncio.to_thread(http_get_json, runtime.http_url + "/health")
    assert status == 200
    assert isinstance(body, dict) and body


async def test_many_concurrent_clients_are_served_in_parallel(runtime):
    started = time.monotonic()

    async def one(i: int) -> str:
        client = RuntimeUseClient(ws_url=runtime.url)
        await client.query(prompt="SLOW:2000", options=query_options())
        return (await client.query(prompt=f"ECHO:{i}", options=query_options())).data.text

    results = await asyncio.gather(*(one(i) for i in range(12)))
    assert results == [str(i) for i in range(12)]
    # One at a time they would take 24 s.
    assert time.monotonic() - started < 12, "sessions must not be served one at a time"


@pytest.mark.pypi_only  # asserts websockets' exception type
async def test_client_without_token_is_refused(start_runtime):
    rt = start_runtime("--token", TOKEN)
    client = RuntimeUseClient(ws_url=rt.url)
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await client.query(prompt="ECHO:nope", options=query_options(timeout=10))
    assert info.value.response.status_code == 401

    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        async with connect(f"{rt.url}/?token=wrong"):
            pass
    assert info.value.response.status_code == 401


async def test_token_in_query_string_or_bearer_header_is_accepted(start_runtime):
    rt = start_runtime("--token", TOKEN)
    async with connect(f"{rt.url}/?token={TOKEN}") as ws:
        await ws.send(invocation("ECHO:query token"))
        assert (await recv(ws))["data"]["text"] == "query token"
    async with connect(rt.url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        await ws.send(invocation("ECHO:bearer"))
        assert (await recv(ws))["data"]["text"] == "bearer"

    client = RuntimeUseClient(ws_url=f"{rt.url}/?token={TOKEN}")
    result = await client.query(prompt="ECHO:pypi client", options=query_options())
    assert result.data.text == "pypi client"
    async with client.session() as session:
        result = await session.query(prompt="ECHO:in session", options=query_options())
    assert result.data.text == "in session"

    # Health stays open for readiness probes.
    status, _ = await asyncio.to_thread(http_get_json, rt.http_url + "/health")
    assert status == 200


@pytest.mark.pypi_only  # asserts websockets' exception type
async def test_token_from_environment_variable(start_runtime):
    rt = start_runtime("--heartbeat-interval", "0.2", env={"RUNTIMEUSE_TOKEN": TOKEN})
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await RuntimeUseClient(ws_url=rt.url).query(prompt="ECHO:x", options=query_options())
    client = RuntimeUseClient(ws_url=f"{rt.url}/?token={TOKEN}")
    assert (await client.query(prompt="ECHO:env", options=query_options())).data.text == "env"


async def test_sigterm_exits_zero_after_serving(start_runtime):
    rt = start_runtime()
    client = RuntimeUseClient(ws_url=rt.url)
    assert (await client.query(prompt="ECHO:x", options=query_options())).data.text == "x"
    rt.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(rt.proc.wait, 10)
    assert code == 0, rt.describe()
    # Scripts read the port from stdout: the ready lines (ours, then upstream's text) must
    # stay the only lines there.
    assert rt.stdout_after_exit() == [
        f"runtimeuse listening on ws://127.0.0.1:{rt.port}",
        f"RuntimeUse server listening on port {rt.port}",
    ]


async def test_sigterm_during_request_kills_commands_and_exits_zero(start_runtime, tmp_path):
    rt = start_runtime()
    pid_file = tmp_path / "pid"
    client = RuntimeUseClient(ws_url=rt.url)
    task = asyncio.create_task(client.execute_commands(
        commands=[CommandInterface(command=f"sleep 30 & echo $! > {pid_file}; wait")],
        options=exec_options(timeout=20),
    ))
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "command did not start"
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())

    rt.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(rt.proc.wait, 10)
    assert code == 0, rt.describe()
    assert pid_is_gone(pid), "the command's process tree must be killed on shutdown"
    # The in-flight request ends (error terminal or closed socket), it does not hang.
    try:
        await asyncio.wait_for(task, 5)
    except TimeoutError:
        raise AssertionError("the in-flight request hung after SIGTERM") from None
    except Exception:  # noqa: BLE001 (error terminal or connection closed: both fine)
        pass
