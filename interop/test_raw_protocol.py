"""Wire-level behaviour the Python client cannot produce, over a raw WebSocket."""

import asyncio
import json

from websockets.asyncio.client import connect

from _support import invocation, real, recv, upload_path


async def test_invalid_json_gets_error_message_and_connection_stays_usable(runtime):
    async with connect(runtime.url) as ws:
        await ws.send("{this is not json")
        err = await recv(ws)
        assert err["message_type"] == "error_message"
        assert isinstance(err["error"], str) and err["error"]
        assert isinstance(err.get("metadata", {}), dict)

        await ws.send(invocation("ECHO:after garbage"))
        result = await recv(ws)
        assert result["message_type"] == "result_message"
        assert result["data"] == {"type": "text", "text": "after garbage"}


async def test_non_object_and_missing_fields_get_error_messages(runtime):
    async with connect(runtime.url) as ws:
        for frame in ("[1, 2, 3]", '{"no_type": true}',
                      '{"message_type": "invocation_message", "user_prompt": "no model"}',
                      '{"message_type": "command_execution_message"}'):
            await ws.send(frame)
            err = await recv(ws)
            assert err["message_type"] == "error_message", frame
        await ws.send(invocation("ECHO:still usable"))
        assert (await recv(ws))["data"]["text"] == "still usable"


async def test_unknown_message_type_is_ignored(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(json.dumps({"message_type": "message_from_the_future", "x": 1}))
        await ws.send(invocation("ECHO:ignored it"))
        msg = await recv(ws)
        assert msg["message_type"] == "result_message", msg
        assert msg["data"]["text"] == "ignored it"


async def test_explicit_nulls_and_unknown_fields_are_accepted(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(invocation(
            "ECHO:nulls", source_id=None, agent_env=None, secrets_to_redact=None,
            output_format_json_schema_str=None, artifacts_dirs=None, artifacts_dir=None,
            artifacts_ignore_content=None, pre_agent_invocation_commands=None,
            post_agent_invocation_commands=None, pre_agent_downloadables=None,
            some_future_field={"nested": True},
        ))
        msg = await recv(ws)
        assert msg["message_type"] == "result_message", msg
        assert msg["data"]["text"] == "nulls"


async def test_request_while_one_is_in_flight_gets_error_and_first_completes(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(invocation("SLOW:800"))
        await asyncio.sleep(0.1)
        await ws.send(invocation("ECHO:second"))
        first = await recv(ws)
        assert first["message_type"] == "error_message", first
        second = await recv(ws)
        assert second["message_type"] == "result_message", second
        assert second["data"]["text"] == "done"


async def test_cancel_with_nothing_in_flight_is_ignored(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(json.dumps({"message_type": "cancel_message"}))
        await ws.send(invocation("ECHO:not cancelled"))
        msg = await recv(ws)
        assert msg["message_type"] == "result_message", msg
        assert msg["data"]["text"] == "not cancelled"


async def test_cancel_message_ends_request_with_request_cancelled(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(invocation("SLOW:10000"))
        await asyncio.sleep(0.2)
        await ws.send(json.dumps({"message_type": "cancel_message"}))
        msg = await recv(ws, timeout=3)
        assert msg == {"message_type": "error_message", "error": "Request cancelled",
                       "metadata": {}}


async def test_heartbeats_are_sent_while_request_in_flight(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(invocation("SLOW:700"))
        heartbeats = []
        while True:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if msg["message_type"] != "heartbeat_message":
                break
            heartbeats.append(msg)
        assert msg["message_type"] == "result_message"
        assert len(heartbeats) >= 2, heartbeats
        assert all(h["phase"] == "request_in_flight" and isinstance(h["elapsed_ms"], int)
                   for h in heartbeats)
        assert heartbeats == sorted(heartbeats, key=lambda h: h["elapsed_ms"])


async def test_end_session_is_confirmed_and_connection_closed(runtime):
    async with connect(runtime.url) as ws:
        await ws.send(json.dumps({"message_type": "end_session_message"}))
        msg = await recv(ws)
        assert msg["message_type"] == "end_session_confirm_message"
        await asyncio.wait_for(ws.wait_closed(), 5)


async def test_deprecated_artifacts_dir_field_is_watched(runtime, http_server, tmp_path):
    adir = tmp_path / "legacy"
    async with connect(runtime.url) as ws:
        await ws.send(invocation(f"WRITE_FILE:{adir}/legacy.txt old field",
                                 artifacts_dir=str(adir), artifacts_dirs=[str(adir)]))
        req = await recv(ws)
        assert req == {"message_type": "artifact_upload_request_message",
                       "filename": "legacy.txt", "filepath": real(adir / "legacy.txt")}
        await ws.send(json.dumps({
            "message_type": "artifact_upload_response_message",
            "filename": req["filename"], "filepath": req["filepath"],
            "presigned_url": http_server.url + upload_path(req["filepath"]),
            "content_type": "text/plain",
        }))
        result = await recv(ws)
        assert result["message_type"] == "result_message", result
    put = await asyncio.to_thread(http_server.wait_for_put, upload_path(real(adir / "legacy.txt")))
    assert put.body == b"old field"
