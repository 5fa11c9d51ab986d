"""``Idempotency-Key`` on every POST: the same key and body replays the first response,
the same key with another body answers 422, a key whose first request is still running
answers 409.

The key is claimed in the store before the work runs (so two concurrent requests with one
key cannot both act), and the response is stored after it. Server errors (5xx) and 429 (a
send limit: try again later) release the claim: they say nothing final about the
request, and the client may try again with the same key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.problems import problem
from gateway.auth import Principal
from gateway.extensions import Host

HEADER = "idempotency-key"
CLAIM_TTL = timedelta(minutes=5)
MAX_KEY = 255


async def idempotent(
    rt: Host,
    request: Request,
    principal: Principal,
    body: bytes,
    run: Callable[[], Awaitable[Response]],
) -> Response:
    """Run ``run`` at most once per (team, Idempotency-Key)."""
    key = request.headers.get(HEADER)
    if key is None:
        return await run()
    if not key or len(key) > MAX_KEY:
        return problem(
            400,
            "malformed_request",
            "Malformed request",
            f"Idempotency-Key must be 1 to {MAX_KEY} characters",
            request.url.path,
        )
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    fingerprint = digest.hexdigest()
    # Keys are per team; a member key shares its team's namespace.
    scope = principal.team_id
    existing = await rt.store.idem_claim(scope, key, fingerprint, rt.clock.now(), CLAIM_TTL)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            return problem(
                422,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
                request.url.path,
            )
        if existing.status_code is None:
            return problem(
                409,
                "idempotency_in_progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed",
                request.url.path,
            )
        return Response(
            existing.body,
            existing.status_code,
            headers={"Idempotency-Replayed": "true"},
            media_type=_media_type(existing.status_code),
        )
    try:
        response = await run()
    except BaseException:
        await rt.store.idem_release(scope, key)
        raise
    if response.status_code >= 500 or response.status_code == 429:
        await rt.store.idem_release(scope, key)
    else:
        await rt.store.idem_complete(
            scope, key, response.status_code, bytes(response.body).decode(), rt.clock.now()
        )
    return response


def _media_type(status: int) -> str:
    return "application/json" if status < 400 else "application/problem+json"
