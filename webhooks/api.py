"""The ``/v1/webhook-endpoints`` routes: endpoints, their delivery log, retry and replay.

Team keys only: an endpoint receives the events of every member of the team, so a member
key (which sees only its own member's messages) gets ``403 forbidden`` on every route.
Every POST takes an ``Idempotency-Key`` like the rest of the API.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import jsoncodec
from gateway.api.idempotency import idempotent
from gateway.api.problems import from_error
from gateway.auth import Principal
from gateway.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    ValidationError,
)
from gateway.ids import new_id
from gateway.models import Event, iso
from gateway.runtime import Runtime
from gateway.store.base import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    Delivery,
    Store,
    WebhookEndpoint,
)
from webhooks import endpoints, signing
from webhooks.delivery import new_delivery
from webhooks.targets import Resolver, system_resolver

BODY_LIMIT = 64 * 1024
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
REPLAY_MAX = 10_000  # deliveries one replay request sends; ``next_since`` continues
# Events are appended in about (not exactly) time order across processes: a replay looks
# this far before ``since`` for where to start, then filters on the exact times.
CLOCK_SKEW = timedelta(minutes=5)
DELIVERY_STATUSES = (DELIVERY_PENDING, DELIVERY_SUCCEEDED, DELIVERY_FAILED)
_SEQ_CURSOR = re.compile(r"^[0-9]{1,18}$")
# The resolver that checks URLs when endpoints are created or changed (tests replace it).
RESOLVER: Resolver = system_resolver


# -- helpers -----------------------------------------------------------------------------
def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.rt
    return rt


async def _team(request: Request) -> Principal:
    principal: Principal = await request.app.state.keys.resolve(
        request.headers.get("authorization")
    )
    if principal.member_id is not None:
        raise Forbidden(
            "webhook endpoints are managed with a team key: an endpoint receives the events "
            "of every member of the team"
        )
    return principal


def _json(data: Any, status: int = 200) -> Response:
    return Response(jsoncodec.dumpb(data), status, media_type="application/json")


async def _read(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > BODY_LIMIT:
            raise PayloadTooLarge(f"the body is larger than {BODY_LIMIT // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(raw: bytes) -> Any:
    try:
        # Bounded nesting: a 1,000-deep "events" made the error message's repr recurse.
        return jsoncodec.loads_external(raw)
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


async def _endpoint(rt: Runtime, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await rt.store.get_webhook_endpoint(endpoint_id)
    if endpoint is None or endpoint.team_id != principal.team_id:
        raise NotFound("webhook endpoint not found")
    return endpoint


def _enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict(
            'the endpoint is disabled; enable it first (PATCH with "enabled": true)',
            code="endpoint_disabled",
        )


Action = Callable[[Runtime, Principal, bytes], Awaitable[Response]]


async def _posted(request: Request, action: Action, fingerprint: bytes = b"") -> Response:
    """A POST: team key, bounded body, idempotent; gateway errors become problem answers
    that are stored with the key like any other."""
    rt, principal = _rt(request), await _team(request)
    raw = await _read(request)

    async def run() -> Response:
        try:
            return await action(rt, principal, raw)
        except GatewayError as exc:
            return from_error(exc, request.url.path)

    return await idempotent(rt, request, principal, raw + fingerprint, run)


async def _save(rt: Runtime, endpoint: WebhookEndpoint, reset_failing: bool = False) -> None:
    endpoint.version += 1
    endpoint.updated_at = rt.clock.now()
    if not await rt.store.update_webhook_endpoint(endpoint, reset_failing):
        raise Conflict("the endpoint was changed at the same time; read it and try again")


# -- endpoints ---------------------------------------------------------------------------
async def create_endpoint(request: Request) -> Response:
    """POST /v1/webhook-endpoints: register an endpoint (201, with its secret, shown once)."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        fields = endpoints.parse_fields(_parse(raw), create=True)
        assert fields.url is not None
        allow = rt.settings.webhooks.allow_private_targets
        await endpoints.check_url(fields.url, allow, RESOLVER)
        now = rt.clock.now()
        endpoint = WebhookEndpoint(
            id=new_id("whep"),
            team_id=principal.team_id,
            url=fields.url,
            events=fields.events or [],
            enabled=True if fields.enabled is None else fields.enabled,
            secret=signing.new_secret(),
            created_at=now,
            updated_at=now,
            description=fields.description,
        )
        await rt.store.create_webhook_endpoint(endpoint, endpoints.MAX_ENDPOINTS_PER_TEAM)
        return _json({**endpoints.view(endpoint, now), "secret": endpoint.secret}, 201)

    return await _posted(request, action)


async def list_endpoints(request: Request) -> Response:
    """GET /v1/webhook-endpoints: the team's endpoints, oldest first."""
    rt, principal = _rt(request), await _team(request)
    now = rt.clock.now()
    found = await rt.store.list_webhook_endpoints(principal.team_id)
    return _json({"data": [endpoints.view(e, now) for e in found]})


async def get_endpoint(request: Request) -> Response:
    """GET /v1/webhook-endpoints/{id}."""
    rt, principal = _rt(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    return _json(endpoints.view(endpoint, rt.clock.now()))


async def update_endpoint(request: Request) -> Response:
    """PATCH /v1/webhook-endpoints/{id}: change url, events, enabled or description."""
    rt, principal = _rt(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    fields = endpoints.parse_fields(_parse(await _read(request)), create=False)
    if fields.url is not None and fields.url != endpoint.url:
        allow = rt.settings.webhooks.allow_private_targets
        await endpoints.check_url(fields.url, allow, RESOLVER)
        endpoint.url = fields.url
    if fields.events is not None:
        endpoint.events = fields.events
    if fields.description_given:
        endpoint.description = fields.description
    reset = False
    if fields.enabled is not None:
        # Enabling again starts over: the failure streak and the gateway's reason go.
        reset = fields.enabled and not endpoint.enabled
        endpoint.enabled = fields.enabled
        endpoint.disabled_reason = None
    await _save(rt, endpoint, reset_failing=reset)
    if reset:
        endpoint.failing_since = None
    return _json(endpoints.view(endpoint, rt.clock.now()))


async def delete_endpoint(request: Request) -> Response:
    """DELETE /v1/webhook-endpoints/{id}: the endpoint and its delivery log (204)."""
    rt, principal = _rt(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    await rt.store.delete_webhook_endpoint(endpoint.id)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    """POST /v1/webhook-endpoints/{id}/rotate-secret: a new secret (shown once); the old
    one keeps signing for 24 hours."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        if raw.strip() not in (b"", b"{}"):
            raise ValidationError("this request takes no body (or {})")
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        now = rt.clock.now()
        secret = signing.rotate(endpoint, now)
        await _save(rt, endpoint)
        return _json({**endpoints.view(endpoint, now), "secret": secret})

    return await _posted(request, action)


# -- deliveries --------------------------------------------------------------------------
def delivery_view(d: Delivery) -> dict[str, Any]:
    """A delivery as the API shows it (without its attempt log)."""
    waiting = d.status == DELIVERY_PENDING and d.token is None
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "in_flight": d.status == DELIVERY_PENDING and d.token is not None,
        "next_attempt_at": iso(d.due_at) if waiting and d.due_at is not None else None,
        "held_back": waiting and d.due_at is None,
        "last_attempt": d.last_attempt,
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at or d.created_at),
    }


async def list_deliveries(request: Request) -> Response:
    """GET /v1/webhook-endpoints/{id}/deliveries: newest event first, cursor-paged."""
    rt, principal = _rt(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    q = request.query_params
    status = q.get("status")
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationError(
            f"'status' must be one of {', '.join(DELIVERY_STATUSES)}", field="status"
        )
    raw_limit = q.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ValidationError(f"'limit' must be an integer from 1 to {MAX_LIMIT}", field="limit")
    cursor = q.get("cursor") or None
    if cursor is not None and not _SEQ_CURSOR.match(cursor):
        raise ValidationError("'cursor' is not a cursor this API returned", field="cursor")
    page = await rt.store.list_webhook_deliveries(endpoint.id, status, cursor, int(raw_limit))
    return _json({"data": [delivery_view(d) for d in page.items], "next_cursor": page.next_cursor})


async def _delivery(rt: Runtime, endpoint: WebhookEndpoint, delivery_id: str) -> Delivery:
    found = await rt.store.get_webhook_delivery(delivery_id)
    if found is None or found.endpoint_id != endpoint.id:
        raise NotFound("delivery not found")
    return found


async def get_delivery(request: Request) -> Response:
    """GET /v1/webhook-endpoints/{id}/deliveries/{delivery_id}: with every attempt and the
    payload as sent."""
    rt, principal = _rt(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    found = await _delivery(rt, endpoint, request.path_params["delivery_id"])
    events = await rt.store.events_at([found.seq])
    body: Any = None
    if events:
        body = {"type": events[0].type, "timestamp": iso(events[0].created_at),
                "data": events[0].data}  # fmt: skip
    return _json({**delivery_view(found), "attempt_log": found.log, "payload": body})


async def retry_delivery(request: Request) -> Response:
    """POST …/deliveries/{delivery_id}/retry: attempt it again now (202), with the same
    webhook-id; a final delivery starts a new series of attempts."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        found = await _delivery(rt, endpoint, request.path_params["delivery_id"])
        _enabled(endpoint)
        (after,) = await rt.store.requeue_webhook_deliveries([found], rt.clock.now())
        if after.status == DELIVERY_PENDING and after.token is None and after.due_at is None:
            raise Conflict(
                "this delivery waits for an earlier event of the same conversation to this "
                "endpoint; it goes out once that one succeeded or failed (retry that one)",
                code="delivery_held_back",
            )
        return _json(delivery_view(after), 202)

    return await _posted(request, action)


def _time(request: Request, name: str) -> datetime | None:
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
    return when


async def _first_after(store: Store, seq: int) -> Event | None:
    found = await store.list_events(seq, 1)
    return found[0] if found else None


async def seq_before(store: Store, when: datetime) -> int:
    """A seq after which every event created at or after ``when`` lies (binary search of
    the log, which is appended in about time order)."""
    first = await _first_after(store, 0)
    if first is None or first.created_at >= when:
        return 0
    low, step = first.seq, 1  # low: an event created before ``when``
    while True:  # find a bound above
        probe = await _first_after(store, low + step - 1)
        if probe is None or probe.created_at >= when:
            high = low + step
            break
        low, step = probe.seq, step * 2
    while high - low > 1:
        mid = (low + high) // 2
        probe = await _first_after(store, mid - 1)
        if probe is None or probe.seq >= high or probe.created_at >= when:
            high = mid
        else:
            low = probe.seq
    return low


async def replay(request: Request) -> Response:
    """POST /v1/webhook-endpoints/{id}/replay?since=…[&until=…]: send the endpoint's events
    of that time again (202), each with its own webhook-id as before."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        if raw.strip() not in (b"", b"{}"):
            raise ValidationError("this request takes no body (or {}); use ?since=…")
        since, until = _time(request, "since"), _time(request, "until")
        now = rt.clock.now()
        if since is None:
            raise ValidationError("'since' is required (an RFC 3339 time)", field="since")
        until = until or now
        if since > until:
            raise ValidationError("'since' must not be after 'until'", field="since")
        _enabled(endpoint)
        sent, next_since = await _replay(rt, endpoint, since, until, now)
        return _json(
            {
                "endpoint_id": endpoint.id,
                "since": iso(since),
                "until": iso(until),
                "deliveries": sent,
                "next_since": next_since,
            },
            202,
        )

    return await _posted(request, action, b"?" + request.url.query.encode())


async def _replay(
    rt: Runtime, endpoint: WebhookEndpoint, since: datetime, until: datetime, now: datetime
) -> tuple[int, str | None]:
    """Requeue the endpoint's events in [since, until]; (how many, where to go on)."""
    store = rt.store
    after = await seq_before(store, since - CLOCK_SKEW)
    batch: list[Delivery] = []
    sent, done = 0, False
    while not done:
        events = await store.list_events(after, 1000)
        if not events:
            break
        after = events[-1].seq
        for event in events:
            if event.created_at > until + CLOCK_SKEW:
                done = True
                break
            if (
                event.team_id != endpoint.team_id
                or not since <= event.created_at <= until
                or (endpoint.events and event.type not in endpoint.events)
            ):
                continue
            if sent + len(batch) >= REPLAY_MAX:
                await store.requeue_webhook_deliveries(batch, now)
                return sent + len(batch), iso(event.created_at)
            batch.append(new_delivery(event, endpoint, now))
            if len(batch) >= 500:
                await store.requeue_webhook_deliveries(batch, now)
                sent, batch = sent + len(batch), []
    if batch:
        await store.requeue_webhook_deliveries(batch, now)
    return sent + len(batch), None


ROUTES = [
    Route("/v1/webhook-endpoints", create_endpoint, methods=["POST"]),
    Route("/v1/webhook-endpoints", list_endpoints, methods=["GET"]),
    Route("/v1/webhook-endpoints/{id}", get_endpoint, methods=["GET"]),
    Route("/v1/webhook-endpoints/{id}", update_endpoint, methods=["PATCH"]),
    Route("/v1/webhook-endpoints/{id}", delete_endpoint, methods=["DELETE"]),
    Route("/v1/webhook-endpoints/{id}/rotate-secret", rotate_secret, methods=["POST"]),
    Route("/v1/webhook-endpoints/{id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhook-endpoints/{id}/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route(
        "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry",
        retry_delivery,
        methods=["POST"],
    ),
    Route("/v1/webhook-endpoints/{id}/replay", replay, methods=["POST"]),
]
