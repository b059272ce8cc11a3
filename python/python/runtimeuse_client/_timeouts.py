"""``asyncio.timeout`` where it exists (3.11+), an equivalent on 3.10."""

from __future__ import annotations

import asyncio
import sys
from contextlib import asynccontextmanager
from typing import AsyncIterator

__all__ = ["timeout"]

if sys.version_info >= (3, 11):
    timeout = asyncio.timeout
else:

    @asynccontextmanager
    async def timeout(delay: float | None) -> AsyncIterator[None]:
        """Cancels the current task after ``delay`` seconds and raises ``TimeoutError``."""
        if delay is None:
            yield
            return
        task = asyncio.current_task()
        assert task is not None, "timeout() must be used inside a task"
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(delay, expire)
        try:
            yield
        except asyncio.CancelledError:
            if expired:
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()
