"""The native bridge of each running event loop.

Results of the Rust side reach a loop through its ``_native.LoopBridge``: Rust queues them
and wakes the loop through a socket it watches, and the loop's own thread resolves the
futures. Rust threads therefore never touch the interpreter, which is what keeps the
interpreter's exit safe while calls are still running (see ``python/src/bridge.rs``).
"""

from __future__ import annotations

import asyncio
import weakref

from . import _native

__all__ = ["current_bridge"]

# One bridge per loop; a bridge holds its loop weakly, so a closed loop is collected and
# its bridge (and socket pair) with it.
_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _native.LoopBridge] = (
    weakref.WeakKeyDictionary()
)


def current_bridge() -> _native.LoopBridge:
    """The bridge of the running loop, made and registered on first use."""
    loop = asyncio.get_running_loop()
    bridge = _bridges.get(loop)
    if bridge is None:
        bridge = _native.LoopBridge(loop)
        loop.add_reader(bridge.fileno(), bridge.drain)
        _bridges[loop] = bridge
    return bridge
