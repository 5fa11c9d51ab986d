"""What every API route needs: the request's runtime and caller, JSON answers, list
parameters, bounded bodies and idempotent POSTs (public to extensions).

The core's ``/v1`` routes (``gateway/api/v1.py``), the webhooks' (``webhooks/api.py``) and
next the portal's use these, so that every route reads and refuses alike: the same
problem codes and words for a bad ``limit``, ``cursor`` or time, an oversized or broken
body. Request bodies become typed commands with ``gateway.commands.decode``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway import jsoncodec
from gateway.api.idempotency import idempotent
from gateway.api.problems import from_error
from gateway.auth import Principal
from gateway.commands import parse
from gateway.errors import Forbidden, GatewayError, PayloadTooLarge, ValidationError
from gateway.extensions import Host

MAX_LIMIT = 200
# Times a query may name: room on both sides for the arithmetic done with them (a replay
# starts minutes before its ``since``; year 1 minus five minutes overflows).
TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))
DEFAULT_LIMIT = 50

H = TypeVar("H", bound=Host)
# What a POST does, given the process it runs in: an extension's action takes a ``Host``;
# the core's own routes take the whole ``gateway.runtime.Runtime`` (which is one).
Action = Callable[[H, Principal, bytes], Awaitable[Response]]
Caller = Callable[[Request], Awaitable[Principal]]

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Action",
    "Caller",
    "choice_param",
    "cursor_param",
    "json_response",
    "limit_param",
    "parse",
    "posted",
    "principal",
    "read_body",
    "runtime",
    "team_principal",
    "time_param",
]


def runtime(request: Request) -> Host:
    """What the app's process offers its routes (its runtime, seen as a ``Host``)."""
    rt: Host = request.app.state.rt
    return rt


async def principal(request: Request) -> Principal:
    """Who calls: the API key in ``Authorization``, or ``Unauthorized``."""
    found: Principal = await request.app.state.keys.resolve(request.headers.get("authorization"))
    return found


async def team_principal(request: Request, refusal: str) -> Principal:
    """The caller, who must use a team key (``Forbidden(refusal)`` for a member key)."""
    found = await principal(request)
    if found.member_id is not None:
        raise Forbidden(refusal)
    return found


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as an ``application/json`` answer."""
    return Response(jsoncodec.dumpb(data), status, media_type="application/json")


def limit_param(request: Request, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    """The page size in ``?limit=``: a whole number from 1 to ``maximum``."""
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ValidationError(f"'limit' must be an integer from 1 to {maximum}", field="limit")
    return int(raw)


def cursor_param(request: Request, pattern: re.Pattern[str]) -> str | None:
    """``?cursor=``, which must look like a cursor this API returned (``pattern``).

    Cursors are opaque to clients but checked, so a mangled one is a 422, not a 500.
    """
    value = request.query_params.get("cursor") or None
    if value is not None and not pattern.match(value):
        raise ValidationError("'cursor' is not a cursor this API returned", field="cursor")
    return value


def choice_param(request: Request, name: str, allowed: Sequence[str]) -> str | None:
    """``?name=``, one of ``allowed`` (named in the refusal in that order) or absent."""
    value = request.query_params.get(name)
    if value is not None and value not in allowed:
        raise ValidationError(f"'{name}' must be one of {', '.join(allowed)}", field=name)
    return value


def time_param(request: Request, name: str) -> datetime | None:
    """``?name=``, an RFC 3339 time with a time zone, or absent."""
    value = request.query_params.get(name)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"'{name}' must be an RFC 3339 time such as 2026-03-15T12:00:00Z", field=name
        ) from None
    if when.tzinfo is None:
        raise ValidationError(f"'{name}' must include a time zone (Z or +01:00)", field=name)
    try:  # comparing converts to UTC, which overflows at the ends of the calendar
        ok = TIME_RANGE[0] <= when <= TIME_RANGE[1]
    except OverflowError:
        ok = False
    if not ok:
        raise ValidationError(
            f"'{name}' must be between {TIME_RANGE[0]:%Y} and {TIME_RANGE[1]:%Y}", field=name
        )
    return when


async def read_body(request: Request, limit: int, too_large: str | None = None) -> bytes:
    """The body, refused with ``PayloadTooLarge(too_large)`` past ``limit`` bytes (declared
    or read) without reading the rest."""
    said = too_large or f"the upload is larger than the limit of {limit} bytes"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(said)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(said)
        chunks.append(chunk)
    return b"".join(chunks)


async def posted(
    request: Request,
    action: Action[H],
    *,
    caller: Caller = principal,
    limit: int | None = None,
    too_large: str | None = None,
    fingerprint: bytes = b"",
    resumable: str | None = None,
) -> Response:
    """A POST: ``caller`` authenticates, the body is read (bounded by ``limit`` if given),
    and ``action(rt, principal, body)`` runs once per ``Idempotency-Key``; its gateway
    errors become problem answers, stored with the key like any other answer.
    ``fingerprint`` adds what else identifies the request (its query) to the key's check;
    ``resumable`` (the id prefix of what ``action`` creates under
    ``gateway.api.idempotency.reserved_id(request)``) makes a retry resume a first attempt
    that died instead of answering 409 (see ``idempotent``).
    """
    # The app serves a ``Runtime``, which is every ``Host`` an action may ask for.
    rt: H = request.app.state.rt
    who = await caller(request)
    raw = await request.body() if limit is None else await read_body(request, limit, too_large)

    async def run() -> Response:
        try:
            return await action(rt, who, raw)
        except GatewayError as exc:
            return from_error(exc, request.url.path)

    return await idempotent(rt, request, who, raw + fingerprint, run, resumable=resumable)
