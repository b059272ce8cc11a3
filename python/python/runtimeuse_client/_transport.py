"""Custom transports (``RuntimeUseClient(transport=...)``), the published client's hook.

A transport is what the published client's ``Transport`` protocol describes: called with
an ``asyncio.Queue`` of outgoing messages (dicts), it returns an async generator that
opens the connection, yields the runtime's messages (dicts) and sends what is put on the
queue, until it is closed. The Rust client runs its request state machine over it as over
its own WebSocket: for each connection it opens (one per one-shot call, one per session)
it calls :func:`start` on the caller's loop, which pumps the generator into the native
link and the link's outgoing messages onto the queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncGenerator, Callable

from . import _native
from ._loop import current_bridge

__all__ = ["Transport", "start"]

Transport = Callable[["asyncio.Queue[dict[str, Any]]"], AsyncGenerator[dict[str, Any], None]]

logger = logging.getLogger("runtimeuse_client")

# Pumps in flight, kept referenced until they end.
_running: set[asyncio.Task[None]] = set()


def start(transport: Transport, end: _native.TransportEnd) -> None:
    """Runs one connection of ``transport`` on the running loop (called by the native
    side when the client opens a connection)."""
    task = asyncio.ensure_future(_pump(transport, end))
    _running.add(task)
    task.add_done_callback(_running.discard)


async def _pump(transport: Transport, end: _native.TransportEnd) -> None:
    bridge = current_bridge()
    send_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    receiving = asyncio.current_task()

    async def outgoing() -> None:
        while (frame := await end.next_outbound(bridge)) is not None:
            await send_queue.put(json.loads(frame))
        # The client closed the connection: so does the transport.
        assert receiving is not None
        receiving.cancel()

    sender = asyncio.ensure_future(outgoing())
    messages = transport(send_queue)
    try:
        async for message in messages:
            if not end.deliver(json.dumps(message)):
                break
    except asyncio.CancelledError:
        pass
    except Exception:
        # The call sees a closed connection ("No result message received"); the cause is
        # logged here.
        logger.exception("the custom transport failed")
    finally:
        end.close()
        sender.cancel()
        try:
            await messages.aclose()
        except Exception:
            logger.exception("closing the custom transport failed")
