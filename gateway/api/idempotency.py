"""``Idempotency-Key`` on every POST: the same key and body replays the first response,
the same key with another body answers 422, a key whose first request is still running
answers 409.

The key is claimed in the store before the work runs (so two concurrent requests with one
key cannot both act), and the response is stored after it. Server errors (5xx) and 429 (a
send limit: try again later) release the claim: they say nothing final about the
request, and the client may try again with the same key.

A *resumable* request (a send) reserves the id of what it creates with its claim
(``reserved_id``) and creates it in one store step that refuses an id already stored. Its
claim is never released, and a retry that finds it pending — the first request died
after or before that step (a killed process, a store that went away with the answer in
flight), or still runs — runs again under the same id instead of answering 409: it
either creates the object or answers the one the first run created. Without that, the
first request's message was stored but its key kept answering 409 until the claim
expired, and then a retry stored (and charged) the message a second time.
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
from gateway.ids import new_id

HEADER = "idempotency-key"
CLAIM_TTL = timedelta(minutes=5)
# A resumable claim lasts as long as a completed key is kept: a retry a day later still
# resumes the first request rather than acting a second time.
RESUMABLE_CLAIM_TTL = timedelta(hours=24)
MAX_KEY = 255


def idempotency_scope(principal: Principal) -> str:
    """Whose keys a key is checked among: a team key's among its team's team keys, a member
    key's among its member's keys — never another member's, whose answer (their message:
    id, conversation, text) a replay would otherwise hand over. Ids hold neither ``/``
    nor ``:``, so no team's key can meet a member's in the store's key space."""
    if principal.member_id is None:
        return principal.team_id  # as before: keys stored by team keys keep answering
    return f"{principal.team_id}/{principal.member_id}"


def reserved_id(request: Request) -> str | None:
    """The id a resumable request creates (reserved with its Idempotency-Key), or None
    (no key: the caller picks a fresh id)."""
    ref: str | None = getattr(request.state, "idempotency_ref", None)
    return ref


async def idempotent(
    rt: Host,
    request: Request,
    principal: Principal,
    body: bytes,
    run: Callable[[], Awaitable[Response]],
    *,
    resumable: str | None = None,
) -> Response:
    """Run ``run`` at most once per (principal, Idempotency-Key) (``idempotency_scope``).

    ``resumable``: the id prefix (e.g. ``"msg"``) of what ``run`` creates under
    ``reserved_id(request)`` in one store step that refuses an existing id (see the module
    docstring).
    """
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
    scope = idempotency_scope(principal)
    ref = new_id(resumable) if resumable else None
    ttl = RESUMABLE_CLAIM_TTL if resumable else CLAIM_TTL
    existing = await rt.store.idem_claim(scope, key, fingerprint, rt.clock.now(), ttl, ref)
    if existing is not None:
        if existing.fingerprint != fingerprint:
            return problem(
                422,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
                request.url.path,
            )
        if existing.status_code is None and resumable and existing.ref:
            ref = existing.ref  # resume the first request: same id, created at most once
        elif existing.status_code is None:
            return problem(
                409,
                "idempotency_in_progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed",
                request.url.path,
            )
        else:
            return Response(
                existing.body,
                existing.status_code,
                headers={"Idempotency-Replayed": "true"},
                media_type=_media_type(existing.status_code),
            )
    request.state.idempotency_ref = ref
    try:
        response = await run()
    except BaseException:
        if not resumable:  # a resumable claim stays: its retry resumes under the same id
            await rt.store.idem_release(scope, key)
        raise
    if response.status_code >= 500 or response.status_code == 429:
        if not resumable:
            await rt.store.idem_release(scope, key)
    else:
        await rt.store.idem_complete(
            scope,
            key,
            response.status_code,
            bytes(response.body).decode(),
            rt.clock.now(),
            rt.settings.retention.idempotency,
        )
    return response


def _media_type(status: int) -> str:
    return "application/json" if status < 400 else "application/problem+json"
