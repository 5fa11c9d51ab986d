"""``POST /v1/messages`` without the framework's per-request layers.

Sends are most of the API's traffic, and for them Starlette's routing, its exception
wrappers and its ``Request``/``Response`` objects cost about as much CPU as the send's own
checks. This middleware answers exactly what ``v1.create_message`` answers (same status
codes, headers and problem documents; ``tests/gateway/api/test_fastpath.py`` holds the
two to each other) with a few plain calls: the body is decoded straight into a
``SendRequest`` (validated in C, ``gateway.commands``). It sits inside
``MetricsMiddleware`` (which counts the send under ``create_message``) and Starlette's
``ServerErrorMiddleware`` (which still turns an unexpected exception into the 500 problem).
Everything else, including a send with an ``Idempotency-Key``, goes down the regular route.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway import jsoncodec, outbound
from gateway.api import v1
from gateway.api.limits import declared_length
from gateway.api.problems import from_error, unavailable
from gateway.auth import KeyCache
from gateway.commands import SendRequest, decoder
from gateway.errors import GatewayError, PayloadTooLarge
from gateway.runtime import Runtime
from gateway.store import UNAVAILABLE

PATH = "/v1/messages"
_JSON = (b"content-type", b"application/json")
_decode = decoder(SendRequest)  # the body straight into the command, validated in C


class SendFastPath:
    """Pure ASGI: serves ``POST /v1/messages`` (no Idempotency-Key) itself."""

    def __init__(self, app: ASGIApp, rt: Runtime, keys: KeyCache) -> None:
        self.app = app
        self.rt = rt
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a send, or pass the request on."""
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key":
                await self.app(scope, receive, send)
                return
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        scope["endpoint"] = v1.create_message  # what the router would have matched
        try:
            principal = await self.keys.resolve(authorization)
            raw = await _body(scope, receive)
            accepted = await outbound.submit(self.rt, principal, _decode(raw))
        except GatewayError as exc:
            await from_error(exc, PATH)(scope, receive, send)
            return
        except UNAVAILABLE as exc:
            await unavailable(exc, PATH)(scope, receive, send)
            return
        body = jsoncodec.dumpb(accepted.view)
        # The messages Starlette's Response(body, 202, media_type=...) sends.
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [(b"content-length", str(len(body)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _body(scope: Scope, receive: Receive) -> bytes:
    """The whole request body, refused as ``gateway.api.helpers.read_body`` refuses it past
    ``v1.MESSAGE_BODY_LIMIT`` (declared, or read)."""
    declared = declared_length(scope)
    if declared is not None and declared > v1.MESSAGE_BODY_LIMIT:
        raise PayloadTooLarge(v1.MESSAGE_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > v1.MESSAGE_BODY_LIMIT:
                    raise PayloadTooLarge(v1.MESSAGE_TOO_LARGE)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
