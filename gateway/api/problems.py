"""RFC 9457 problem documents: every error the API answers, with a stable machine ``code``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway import jsoncodec
from gateway.errors import GatewayError, StoreUnavailable

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("gateway.api")

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_error", "Invalid request"),
}


def problem(
    status: int, code: str, title: str, detail: str, instance: str | None = None, **extra: Any
) -> Response:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": f"https://docs.gateway.example/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if instance:
        # The decoded request path, encoded again: the document promises a URI reference
        # (a path such as /v1/messages/%12ß arrives decoded).
        body["instance"] = quote(instance, safe="/!$&'()*+,;=:@")
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503) and "retry_after" in extra:  # when to try again
        headers = {"Retry-After": str(extra["retry_after"])}
    return Response(jsoncodec.dumpb(body), status, headers=headers, media_type=PROBLEM_TYPE)


def from_error(exc: GatewayError, path: str | None = None) -> Response:
    """The problem response of a gateway error."""
    return problem(exc.status, exc.code, exc.title, exc.detail, path, **exc.extra)


async def gateway_error(request: Request, exc: Exception) -> Response:
    """Exception handler for the gateway's error tree."""
    assert isinstance(exc, GatewayError)
    return from_error(exc, request.url.path)


async def http_error(request: Request, exc: Exception) -> Response:
    """Exception handler for Starlette's own HTTP errors (404 route, 405 method, …)."""
    assert isinstance(exc, HTTPException)
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    return problem(exc.status_code, code, title, str(exc.detail), request.url.path)


def unavailable(exc: BaseException, path: str | None = None) -> Response:
    """503 for a store that cannot be reached right now (``gateway.store.UNAVAILABLE``):
    logged in one line, without a traceback (an outage, not a bug), and the connection is
    kept (a 500 from the server-error middleware closes it)."""
    log.warning("store unavailable on %s: %s: %s", path, type(exc).__name__, exc)
    error = StoreUnavailable(
        "the gateway's store cannot be reached right now; nothing was done, try again "
        "(a send with the same Idempotency-Key)",
        retry_after=1,
    )
    return from_error(error, path)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """Exception handler for ``gateway.store.UNAVAILABLE``."""
    return unavailable(exc, request.url.path)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Last resort: log the bug, answer a problem document without internals."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        500, "internal_error", "Internal error", "an unexpected error occurred", request.url.path
    )
