"""The ``/v1/webhook-endpoints`` routes: endpoints, their delivery log, retry and replay.

Team keys only: an endpoint receives the events of every member of the team, so a member
key (which sees only its own member's messages) gets ``403 forbidden`` on every route.
Every POST takes an ``Idempotency-Key`` like the rest of the API.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.api.helpers import (
    Action,
    choice_param,
    cursor_param,
    json_response,
    limit_param,
    posted,
    read_body,
    runtime,
    team_principal,
    time_param,
)
from gateway.auth import Principal
from gateway.commands import UNSET, decode
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.extensions import Host
from gateway.ids import new_id
from gateway.models import Event, iso
from gateway.store.base import Store
from webhooks import endpoints, signing
from webhooks.commands import ReplayRequest, WebhookEndpointCreate, WebhookEndpointUpdate
from webhooks.delivery import new_delivery
from webhooks.models import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    Delivery,
    WebhookEndpoint,
)
from webhooks.settings import webhook_settings
from webhooks.storage import WEBHOOK_STORE, WebhookStore
from webhooks.targets import Resolver, system_resolver

BODY_LIMIT = 64 * 1024
TOO_LARGE = f"the body is larger than {BODY_LIMIT // 1024} KiB"
REPLAY_MAX = 10_000  # deliveries one replay request sends; ``next_since`` continues
# Events are appended in about (not exactly) time order across processes: a replay looks
# this far before ``since`` for where to start, then filters on the exact times.
CLOCK_SKEW = timedelta(minutes=5)
DELIVERY_STATUSES = (DELIVERY_PENDING, DELIVERY_SUCCEEDED, DELIVERY_FAILED)
_SEQ_CURSOR = re.compile(r"^[0-9]{1,18}$")
# The resolver that checks URLs when endpoints are created or changed (tests replace it).
RESOLVER: Resolver = system_resolver


# -- helpers -----------------------------------------------------------------------------
def _hooks(rt: Host) -> WebhookStore:
    return rt.role(WEBHOOK_STORE)


async def _team(request: Request) -> Principal:
    return await team_principal(
        request,
        "webhook endpoints are managed with a team key: an endpoint receives the events of "
        "every member of the team",
    )


async def _read(request: Request) -> bytes:
    return await read_body(request, BODY_LIMIT, TOO_LARGE)


async def _endpoint(rt: Host, principal: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await _hooks(rt).get_endpoint(endpoint_id)
    if endpoint is None or endpoint.team_id != principal.team_id:
        raise NotFound("webhook endpoint not found")
    return endpoint


def _enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict(
            'the endpoint is disabled; enable it first (PATCH with "enabled": true)',
            code="endpoint_disabled",
        )


async def _posted(request: Request, action: Action[Host], fingerprint: bytes = b"") -> Response:
    """A POST: team key, bounded body, idempotent (``gateway.api.helpers.posted``)."""
    return await posted(
        request, action, caller=_team, limit=BODY_LIMIT, too_large=TOO_LARGE,
        fingerprint=fingerprint,
    )  # fmt: skip


async def _save(rt: Host, endpoint: WebhookEndpoint, reset_failing: bool = False) -> None:
    endpoint.version += 1
    endpoint.updated_at = rt.clock.now()
    if not await _hooks(rt).update_endpoint(endpoint, reset_failing):
        raise Conflict("the endpoint was changed at the same time; read it and try again")


# -- endpoints ---------------------------------------------------------------------------
async def create_endpoint(request: Request) -> Response:
    """POST /v1/webhook-endpoints: register an endpoint (201, with its secret, shown once)."""

    async def action(rt: Host, principal: Principal, raw: bytes) -> Response:
        asked = decode(WebhookEndpointCreate, raw)
        events = endpoints.parse_events(asked.events)
        allow = webhook_settings(rt.settings).allow_private_targets
        await endpoints.check_url(asked.url, allow, RESOLVER)
        now = rt.clock.now()
        endpoint = WebhookEndpoint(
            id=new_id("whep"),
            team_id=principal.team_id,
            url=asked.url,
            events=events,
            enabled=asked.enabled,
            secret=signing.new_secret(),
            created_at=now,
            updated_at=now,
            description=asked.description or None,
        )
        await _hooks(rt).create_endpoint(endpoint, endpoints.MAX_ENDPOINTS_PER_TEAM)
        return json_response({**endpoints.view(endpoint, now), "secret": endpoint.secret}, 201)

    return await _posted(request, action)


async def list_endpoints(request: Request) -> Response:
    """GET /v1/webhook-endpoints: the team's endpoints, oldest first."""
    rt, principal = runtime(request), await _team(request)
    now = rt.clock.now()
    found = await _hooks(rt).list_endpoints(principal.team_id)
    return json_response({"data": [endpoints.view(e, now) for e in found]})


async def get_endpoint(request: Request) -> Response:
    """GET /v1/webhook-endpoints/{id}."""
    rt, principal = runtime(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    return json_response(endpoints.view(endpoint, rt.clock.now()))


async def update_endpoint(request: Request) -> Response:
    """PATCH /v1/webhook-endpoints/{id}: change url, events, enabled or description."""
    rt, principal = runtime(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    asked = decode(WebhookEndpointUpdate, await _read(request))
    events = None if asked.events is UNSET else endpoints.parse_events(asked.events)
    if asked.url is not UNSET and asked.url != endpoint.url:
        allow = webhook_settings(rt.settings).allow_private_targets
        await endpoints.check_url(asked.url, allow, RESOLVER)
        endpoint.url = asked.url
    if events is not None:
        endpoint.events = events
    if asked.description is not UNSET:
        endpoint.description = asked.description or None
    reset = False
    if asked.enabled is not UNSET:
        # Enabling again starts over: the failure streak and the gateway's reason go.
        reset = asked.enabled and not endpoint.enabled
        endpoint.enabled = asked.enabled
        endpoint.disabled_reason = None
    await _save(rt, endpoint, reset_failing=reset)
    if reset:
        endpoint.failing_since = None
    return json_response(endpoints.view(endpoint, rt.clock.now()))


async def delete_endpoint(request: Request) -> Response:
    """DELETE /v1/webhook-endpoints/{id}: the endpoint and its delivery log (204)."""
    rt, principal = runtime(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    await _hooks(rt).delete_endpoint(endpoint.id)
    return Response(status_code=204)


async def rotate_secret(request: Request) -> Response:
    """POST /v1/webhook-endpoints/{id}/rotate-secret: a new secret (shown once); the old
    one keeps signing for 24 hours."""

    async def action(rt: Host, principal: Principal, raw: bytes) -> Response:
        if raw.strip() not in (b"", b"{}"):
            raise ValidationError("this request takes no body (or {})")
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        now = rt.clock.now()
        secret = signing.rotate(endpoint, now)
        await _save(rt, endpoint)
        return json_response({**endpoints.view(endpoint, now), "secret": secret})

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
    rt, principal = runtime(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    status = choice_param(request, "status", DELIVERY_STATUSES)
    limit = limit_param(request)
    cursor = cursor_param(request, _SEQ_CURSOR)
    page = await _hooks(rt).list_deliveries(endpoint.id, status, cursor, limit)
    data = [delivery_view(d) for d in page.items]
    return json_response({"data": data, "next_cursor": page.next_cursor})


async def _delivery(rt: Host, endpoint: WebhookEndpoint, delivery_id: str) -> Delivery:
    found = await _hooks(rt).get_delivery(delivery_id)
    if found is None or found.endpoint_id != endpoint.id:
        raise NotFound("delivery not found")
    return found


async def get_delivery(request: Request) -> Response:
    """GET /v1/webhook-endpoints/{id}/deliveries/{delivery_id}: with every attempt and the
    payload as sent."""
    rt, principal = runtime(request), await _team(request)
    endpoint = await _endpoint(rt, principal, request.path_params["id"])
    found = await _delivery(rt, endpoint, request.path_params["delivery_id"])
    events = await rt.store.events_at([found.seq])
    body: Any = None
    if events:
        body = {"type": events[0].type, "timestamp": iso(events[0].created_at),
                "data": events[0].data}  # fmt: skip
    return json_response({**delivery_view(found), "attempt_log": found.log, "payload": body})


async def retry_delivery(request: Request) -> Response:
    """POST …/deliveries/{delivery_id}/retry: attempt it again now (202), with the same
    webhook-id; a final delivery starts a new series of attempts."""

    async def action(rt: Host, principal: Principal, raw: bytes) -> Response:
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        found = await _delivery(rt, endpoint, request.path_params["delivery_id"])
        _enabled(endpoint)
        (after,) = await _hooks(rt).requeue_deliveries([found], rt.clock.now())
        if after.status == DELIVERY_PENDING and after.token is None and after.due_at is None:
            raise Conflict(
                "this delivery waits for an earlier event of the same conversation to this "
                "endpoint; it goes out once that one succeeded or failed (retry that one)",
                code="delivery_held_back",
            )
        return json_response(delivery_view(after), 202)

    return await _posted(request, action)


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

    async def action(rt: Host, principal: Principal, raw: bytes) -> Response:
        endpoint = await _endpoint(rt, principal, request.path_params["id"])
        if raw.strip() not in (b"", b"{}"):
            raise ValidationError("this request takes no body (or {}); use ?since=…")
        since, until = time_param(request, "since"), time_param(request, "until")
        if since is None:
            raise ValidationError("'since' is required (an RFC 3339 time)", field="since")
        now = rt.clock.now()
        asked = ReplayRequest(since=since, until=until or now)
        sent, next_since = await replay_events(rt, endpoint, asked, now)
        return json_response(
            {
                "endpoint_id": endpoint.id,
                "since": iso(asked.since),
                "until": iso(asked.until or now),
                "deliveries": sent,
                "next_since": next_since,
            },
            202,
        )

    return await _posted(request, action, b"?" + request.url.query.encode())


async def replay_events(
    rt: Host, endpoint: WebhookEndpoint, asked: ReplayRequest, now: datetime
) -> tuple[int, str | None]:
    """Requeue the endpoint's events in [since, until]; (how many, where to go on)."""
    since, until = asked.since, asked.until or now
    if since > until:
        raise ValidationError("'since' must not be after 'until'", field="since")
    max_age = timedelta(seconds=webhook_settings(rt.settings).replay_max_age_seconds)
    if since < now - max_age:
        raise ValidationError(
            f"'since' must be within the last {_age(max_age)} (how far back a replay reaches)",
            field="since",
        )
    if until > now + CLOCK_SKEW:
        raise ValidationError("'until' must not be in the future", field="until")
    until = min(until, now)
    _enabled(endpoint)
    store, hooks = rt.store, _hooks(rt)
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
                await hooks.requeue_deliveries(batch, now)
                return sent + len(batch), iso(event.created_at)
            batch.append(new_delivery(event, endpoint, now))
            if len(batch) >= 500:
                await hooks.requeue_deliveries(batch, now)
                sent, batch = sent + len(batch), []
    if batch:
        await hooks.requeue_deliveries(batch, now)
    return sent + len(batch), None


def _age(age: timedelta) -> str:
    """``30 days``, ``12 hours`` or ``90 minutes``: a replay's reach in words."""
    seconds = int(age.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


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
