"""Exceptions raised by the runtimeuse client."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["AgentRuntimeError", "CancelledException"]


class CancelledException(Exception):
    """The call was aborted with ``client.abort()`` or ``session.abort()``."""


class AgentRuntimeError(Exception):
    """The runtime ended the call with an error (or the client gave up on it).

    ``error`` is the human-readable message and ``metadata`` whatever came with it: the
    runtime's ``error_name``/causes, or for client-side limits a ``timeout_type`` and the
    state of the call.
    """

    def __init__(self, error: str, metadata: dict[str, Any] | None = None):
        super().__init__(error)
        self.error = error
        self.metadata = metadata

    def __str__(self) -> str:
        if not self.metadata:
            return self.error
        try:
            rendered = json.dumps(self.metadata, sort_keys=True, default=str)
        except TypeError:  # e.g. keys that are not all strings
            rendered = str(self.metadata)
        return f"{self.error}\nmetadata: {rendered}"
