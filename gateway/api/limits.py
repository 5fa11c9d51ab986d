"""One ceiling on every request body, and hang-ups counted apart.

``BodyLimit`` wraps the whole app (the ``/v1`` routes, extensions' routes, carrier
webhooks, the portal): a request that declares a ``Content-Length`` above the ceiling is
answered 413 problem+json before anything reads it, and a body sent without one (chunked)
is cut off as soon as it passes the ceiling — the route's next read raises
``PayloadTooLarge``, which the app answers 413 like any gateway error. Routes with a lower
limit of their own read through ``gateway.api.helpers.read_body``, which refuses the same
way below this ceiling; no route ever holds more than its limit in memory.

A client that hangs up in the middle of its body (``ClientDisconnect``) is not a server
error: ``MetricsMiddleware`` counts it as 499 and ``hung_up`` logs one line for it.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.problems import from_error
from gateway.errors import PayloadTooLarge

log = logging.getLogger("gateway.api")

# What nginx logs for a request whose client closed the connection first.
CLIENT_CLOSED = 499


def too_large(limit: int) -> PayloadTooLarge:
    """The refusal of a body larger than ``limit`` bytes."""
    return PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` as a number, or None (absent or not a number)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def hung_up(scope: Scope) -> None:
    """Log, in one line and without a traceback, a client that closed mid-request."""
    log.info(
        "client hung up during %s %s (%d)", scope.get("method"), scope.get("path"), CLIENT_CLOSED
    )


def ceilings(max_attachment_bytes: int) -> tuple[tuple[str, int], ...]:
    """The ceiling per path prefix (first match wins, ``""`` matches everything): the API's
    largest body is an upload (plus its multipart envelope), a carrier's webhook is a few
    MiB at most (Meta's: 3 MiB), and other pages (the portal's fax composer, which takes
    several files in one form and bounds its forms itself) get room for several uploads."""
    return (
        ("/v1/", max_attachment_bytes + 64 * 1024),
        ("/hooks/", 4 * 1024 * 1024),
        ("", 16 * max_attachment_bytes + 1024 * 1024),
    )


class BodyLimit:
    """Pure ASGI: no request body past its path's ceiling reaches any route."""

    def __init__(self, app: ASGIApp, limits: tuple[tuple[str, int], ...]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize at once; otherwise count what the route reads."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = next(n for prefix, n in self.limits if path.startswith(prefix))
        declared = declared_length(scope)
        if declared is not None:
            if declared > limit:
                await from_error(too_large(limit), scope["path"])(scope, receive, send)
                return
            # The server reads no more than a declared length (h11 and httptools enforce
            # it), so only a body without one (chunked) needs counting: a send, which
            # declares its length, pays no wrapper.
            await self.app(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, bounded, send)
