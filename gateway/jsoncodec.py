"""JSON for the hot paths: every send encodes five documents (message, history entry,
job, event, response), so the stores and the API use orjson (15x faster encoding than
the standard library here) through these functions.

JSON from outside the gateway (carriers' webhooks and answers) is read with
:func:`loads_external`: besides what is not JSON, it refuses, as ``ValueError``, what the
gateway could not store again — nesting deeper than :data:`MAX_EXTERNAL_DEPTH` (orjson
encodes at most 254 levels; the standard library's parser raises ``RecursionError`` near
1,000), lone surrogates, NaN and infinities — so a caller that answers ``ValueError`` with
400 (or treats the answer as unreadable) is never surprised by another exception later.
"""

from __future__ import annotations

from typing import Any

import orjson

# Meta's webhooks nest about ten levels, carriers' answers fewer. Parts of a document are
# kept inside messages and events a few levels deeper, far below orjson's 254.
MAX_EXTERNAL_DEPTH = 64


def dumps(obj: Any) -> str:
    """Compact JSON text (UTF-8 characters kept as they are)."""
    return orjson.dumps(obj).decode()


def dumpb(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (for response bodies)."""
    return orjson.dumps(obj)


def loads(data: str | bytes) -> Any:
    """Parse JSON text or bytes; raises ``ValueError`` (``orjson.JSONDecodeError``)."""
    return orjson.loads(data)


def loads_external(data: str | bytes, max_depth: int = MAX_EXTERNAL_DEPTH) -> Any:
    """Parse JSON that came from outside; raises ``ValueError`` for anything but JSON
    nested at most ``max_depth`` levels that the gateway can encode again."""
    doc = orjson.loads(data)  # no NaN, no lone surrogates, at most 1,024 levels
    if _nested_beyond(doc, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return doc


def _nested_beyond(doc: Any, limit: int) -> bool:
    """Whether arrays and objects in ``doc`` nest deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False
