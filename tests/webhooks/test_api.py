"""The /v1/webhook-endpoints routes on both stores: CRUD, validation, SSRF at creation,
team keys only, the delivery log, retry and replay — every answer checked against the
OpenAPI document."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from gateway.api.openapi import openapi_document
from gateway.clock import FrozenClock
from gateway.models import iso
from gateway.runtime import Runtime
from tests.gateway.api.test_openapi import Checker
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth
from tests.webhooks.conftest import add_events, hooks, settle
from tests.webhooks.receiver import Answer, Receiver
from webhooks import api as webhooks_api
from webhooks.delivery import Engine, delivery_id
from webhooks.endpoints import KNOWN_EVENTS, MAX_ENDPOINTS_PER_TEAM
from webhooks.settings import webhook_settings
from webhooks.targets import system_resolver

pytestmark = pytest.mark.anyio
BASE = "/v1/webhook-endpoints"


@pytest.fixture
def check(rt: Runtime) -> Checker:
    return Checker(openapi_document(rt.settings.public_url))


async def create(
    client: httpx.AsyncClient, key: str, check: Checker, **body: Any
) -> dict[str, Any]:
    r = await client.post(BASE, json=body, headers=auth(key))
    assert r.status_code == 201, r.text
    check(r, BASE)
    data: dict[str, Any] = r.json()
    return data


def problem(check: Checker, r: httpx.Response, path: str, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    check(r, path)
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    return body


# -- endpoints ---------------------------------------------------------------------------
async def test_endpoint_lifecycle(
    client: httpx.AsyncClient, seed: Seed, check: Checker, receiver: Receiver, clock: FrozenClock,
    rt: Runtime,
) -> None:  # fmt: skip
    team = auth(seed.team_key)
    made = await create(client, seed.team_key, check, url=receiver.url, description="CRM",
                        events=["message.received", "*"])  # fmt: skip
    assert made["secret"].startswith("whsec_")
    assert made["events"] == [] and made["enabled"] is True and made["description"] == "CRM"
    path = f"{BASE}/{made['id']}"
    r = await client.get(path, headers=team)
    check(r, f"{BASE}/{{id}}")
    assert "secret" not in r.json() and r.json()["id"] == made["id"]
    r = await client.get(BASE, headers=team)
    check(r, BASE)
    assert [e["id"] for e in r.json()["data"]] == [made["id"]]

    clock.advance(seconds=1)
    change = {"events": ["message.status", "quota.threshold"], "description": None,
              "enabled": False}  # fmt: skip
    r = await client.patch(path, json=change, headers=team)
    check(r, f"{BASE}/{{id}}")
    updated = r.json()
    assert updated["events"] == ["message.status", "quota.threshold"]
    assert updated["description"] is None and updated["enabled"] is False
    assert updated["updated_at"] == iso(clock.now()) != made["updated_at"]

    r = await client.post(f"{path}/rotate-secret", headers=team)
    check(r, f"{BASE}/{{id}}/rotate-secret")
    rotated = r.json()
    assert rotated["secret"] != made["secret"]
    assert rotated["previous_secret_expires_at"] == iso(clock.now() + timedelta(hours=24))
    stored = await hooks(rt).get_endpoint(made["id"])
    assert stored is not None
    assert (stored.secret, stored.old_secret) == (rotated["secret"], made["secret"])

    r = await client.delete(path, headers=team)
    check(r, f"{BASE}/{{id}}")
    assert r.status_code == 204 and r.content == b""
    problem(check, await client.get(path, headers=team), f"{BASE}/{{id}}", 404, "not_found")
    problem(check, await client.delete(path, headers=team), f"{BASE}/{{id}}", 404, "not_found")


async def test_validation(
    client: httpx.AsyncClient, seed: Seed, check: Checker, receiver: Receiver
) -> None:
    team = auth(seed.team_key)
    cases: list[tuple[Any, str]] = [
        ({}, "url"),
        ({"url": 5}, "url"),
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https://u:p@example.com/"}, "url"),
        ({"url": receiver.url, "events": "message.received"}, "events"),
        ({"url": receiver.url, "events": ["message.received", "message.sent"]}, "events[1]"),
        ({"url": receiver.url, "enabled": "yes"}, "enabled"),
        ({"url": receiver.url, "description": "x" * 300}, "description"),
        ({"url": receiver.url, "secret": "whsec_mine"}, "secret"),
        ([receiver.url], ""),
    ]
    for body, field in cases:
        r = await client.post(BASE, json=body, headers=team)
        got = problem(check, r, BASE, 422, "validation_error")
        assert got.get("field", "") == field, got
    r = await client.post(BASE, json={"url": receiver.url, "events": ["nope"]}, headers=team)
    assert problem(check, r, BASE, 422, "validation_error")["known_events"] == list(KNOWN_EVENTS)
    r = await client.post(BASE, content=b"{nope", headers=team)
    problem(check, r, BASE, 400, "malformed_request")
    r = await client.post(BASE, content=b"{" + b" " * 70_000 + b"}", headers=team)
    problem(check, r, BASE, 413, "payload_too_large")
    made = await create(client, seed.team_key, check, url=receiver.url)
    r = await client.patch(f"{BASE}/{made['id']}", json={"url": "gopher://x/"}, headers=team)
    assert problem(check, r, f"{BASE}/{{id}}", 422, "validation_error")["field"] == "url"
    r = await client.patch(f"{BASE}/{made['id']}", json={"colour": "red"}, headers=team)
    assert problem(check, r, f"{BASE}/{{id}}", 422, "validation_error")["field"] == "colour"


async def test_private_targets_are_refused_unless_allowed(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    own = dataclasses.replace(webhook_settings(rt.settings), allow_private_targets=False)
    rt.settings = rt.settings.with_extension("webhooks", own)

    names = {"public.test": ["93.184.215.14"], "sneaky.test": ["93.184.215.14", "10.1.1.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return names[host] if host in names else await system_resolver(host, port)

    monkeypatch.setattr(webhooks_api, "RESOLVER", resolver)
    team = auth(seed.team_key)
    refused = [
        "http://127.0.0.1:8080/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.5/",
        "http://192.168.1.1/",
        "http://100.64.1.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://localhost/",
        "https://sneaky.test/",
    ]
    for url in refused:
        r = await client.post(BASE, json={"url": url}, headers=team)
        body = problem(check, r, BASE, 422, "url_not_allowed")
        assert body["field"] == "url" and "not allowed" in body["detail"], body
    made = await create(client, seed.team_key, check, url="https://public.test/hooks")
    r = await client.patch(f"{BASE}/{made['id']}", json={"url": "http://10.0.0.1/"}, headers=team)
    problem(check, r, f"{BASE}/{{id}}", 422, "url_not_allowed")


async def test_team_keys_only_and_other_teams_invisible(
    client: httpx.AsyncClient, seed: Seed, check: Checker, receiver: Receiver
) -> None:
    made = await create(client, seed.team_key, check, url=receiver.url)
    member = auth(seed.anna_key)
    for method, path, template in (
        ("GET", BASE, BASE),
        ("POST", BASE, BASE),
        ("GET", f"{BASE}/{made['id']}", f"{BASE}/{{id}}"),
        ("DELETE", f"{BASE}/{made['id']}", f"{BASE}/{{id}}"),
        ("GET", f"{BASE}/{made['id']}/deliveries", f"{BASE}/{{id}}/deliveries"),
    ):
        r = await client.request(method, path, headers=member, json={"url": receiver.url}
                                 if method == "POST" else None)  # fmt: skip
        problem(check, r, template, 403, "forbidden")
    r = await client.get(BASE)
    problem(check, r, BASE, 401, "unauthorized")
    other = auth(seed.other_key)
    r = await client.get(f"{BASE}/{made['id']}", headers=other)
    problem(check, r, f"{BASE}/{{id}}", 404, "not_found")
    r = await client.get(BASE, headers=other)
    assert r.json() == {"data": []}


async def test_endpoint_limit(
    client: httpx.AsyncClient, seed: Seed, check: Checker, receiver: Receiver
) -> None:
    for _ in range(MAX_ENDPOINTS_PER_TEAM):
        await create(client, seed.team_key, check, url=receiver.url)
    r = await client.post(BASE, json={"url": receiver.url}, headers=auth(seed.team_key))
    problem(check, r, BASE, 409, "webhook_endpoint_limit")


async def test_reenabling_clears_the_gateway_reason(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    clock: FrozenClock,
) -> None:  # fmt: skip
    made = await create(client, seed.team_key, check, url=receiver.url)
    endpoint = await hooks(rt).get_endpoint(made["id"])
    assert endpoint is not None
    endpoint.enabled, endpoint.disabled_reason, endpoint.version = False, "failed 5 days", 2
    assert await hooks(rt).update_endpoint(endpoint)
    r = await client.get(f"{BASE}/{made['id']}", headers=auth(seed.team_key))
    assert r.json()["disabled_reason"] == "failed 5 days" and r.json()["enabled"] is False
    r = await client.patch(f"{BASE}/{made['id']}", json={"enabled": True},
                           headers=auth(seed.team_key))  # fmt: skip
    check(r, f"{BASE}/{{id}}")
    assert r.json()["enabled"] is True and r.json()["disabled_reason"] is None
    assert r.json()["failing_since"] is None


# -- deliveries, retry, replay -----------------------------------------------------------
async def test_inbound_message_is_delivered_as_the_api_shows_it(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver
) -> None:
    made = await create(client, seed.team_key, check, url=receiver.url,
                        events=["message.received"])  # fmt: skip
    r = await client.post(
        "/hooks/fake1/inbound", json={"id": "in-1", "from": CONTACT, "to": MOBILE_A, "text": "hi"}
    )
    message_id = r.json()["message_id"]
    engine = Engine(rt, owner="api-test")
    try:
        await settle(engine)
    finally:
        await engine.client.aclose()
    (got,) = receiver.received
    payload = Webhook(made["secret"]).verify(got.body, got.headers)
    shown = (await client.get(f"/v1/messages/{message_id}", headers=auth(seed.team_key))).json()
    shown.pop("history")
    assert payload["type"] == "message.received" and payload["data"] == shown
    assert payload["timestamp"] == shown["created_at"]

    r = await client.get(f"{BASE}/{made['id']}/deliveries", headers=auth(seed.team_key))
    check(r, f"{BASE}/{{id}}/deliveries")
    (listed,) = r.json()["data"]
    assert listed["id"] == got.headers["webhook-id"] and listed["status"] == "succeeded"
    r = await client.get(f"{BASE}/{made['id']}/deliveries/{listed['id']}",
                         headers=auth(seed.team_key))  # fmt: skip
    check(r, f"{BASE}/{{id}}/deliveries/{{delivery_id}}")
    detail = r.json()
    assert detail["payload"] == payload and len(detail["attempt_log"]) == 1
    assert detail["attempt_log"][0]["status_code"] == 204


async def test_delivery_log_pages_and_filters(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    engine: Engine,
) -> None:  # fmt: skip
    receiver.answer = lambda r: Answer(500 if r.json()["data"]["n"] % 2 else 204)
    made = await create(client, seed.team_key, check, url=receiver.url)
    await add_events(rt, seed.team.id,
                     *(("forward.sent", {"n": n}) for n in range(7)))  # fmt: skip
    await settle(engine)
    team = auth(seed.team_key)
    path = f"{BASE}/{made['id']}/deliveries"
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        r = await client.get(path, params=params, headers=team)
        check(r, f"{BASE}/{{id}}/deliveries")
        seen += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 and len({d["id"] for d in seen}) == 7
    r = await client.get(path, params={"status": "pending"}, headers=team)
    check(r, f"{BASE}/{{id}}/deliveries")
    pending = r.json()["data"]
    assert len(pending) == 3 and all(d["next_attempt_at"] for d in pending)
    assert all(d["last_attempt"]["status_code"] == 500 for d in pending)
    for params in ({"status": "lost"}, {"limit": "0"}, {"cursor": "abc"}):
        r = await client.get(path, params=params, headers=team)
        problem(check, r, f"{BASE}/{{id}}/deliveries", 422, "validation_error")
    r = await client.get(f"{path}/whd_nope", headers=team)
    problem(check, r, f"{BASE}/{{id}}/deliveries/{{delivery_id}}", 404, "not_found")


async def test_retry_now(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    engine: Engine, clock: FrozenClock,
) -> None:  # fmt: skip
    receiver.answer = lambda _: Answer(500)
    made = await create(client, seed.team_key, check, url=receiver.url)
    first, second = await add_events(
        rt,
        seed.team.id,
        ("message.received", {"conversation_id": "c1", "n": 1}),
        ("message.received", {"conversation_id": "c1", "n": 2}),
    )
    await settle(engine)
    team = auth(seed.team_key)
    template = f"{BASE}/{{id}}/deliveries/{{delivery_id}}/retry"
    held = delivery_id(second.id, made["id"])
    r = await client.post(f"{BASE}/{made['id']}/deliveries/{held}/retry", headers=team)
    problem(check, r, template, 409, "delivery_held_back")
    head = delivery_id(first.id, made["id"])
    r = await client.post(f"{BASE}/{made['id']}/deliveries/{head}/retry", headers=team)
    check(r, template)
    assert r.status_code == 202 and r.json()["next_attempt_at"] == iso(clock.now())
    receiver.answer = lambda _: Answer(204)
    await settle(engine)  # the retry was due at once: no waiting for the 5 s
    assert [b["data"]["n"] for b in receiver.bodies()] == [1, 1, 2]
    assert {r.headers["webhook-id"] for r in receiver.received[:2]} == {head}
    # A succeeded delivery starts over: a new series, the same webhook-id.
    r = await client.post(f"{BASE}/{made['id']}/deliveries/{head}/retry", headers=team)
    assert r.status_code == 202 and r.json()["attempts"] == 0 and r.json()["status"] == "pending"
    await settle(engine)
    assert receiver.received[-1].headers["webhook-id"] == head
    r = await client.post(f"{BASE}/{made['id']}/deliveries/whd_nope/retry", headers=team)
    problem(check, r, template, 404, "not_found")
    await client.patch(f"{BASE}/{made['id']}", json={"enabled": False}, headers=team)
    r = await client.post(f"{BASE}/{made['id']}/deliveries/{head}/retry", headers=team)
    problem(check, r, template, 409, "endpoint_disabled")


async def test_replay_since(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    engine: Engine, clock: FrozenClock,
) -> None:  # fmt: skip
    made = await create(client, seed.team_key, check, url=receiver.url,
                        events=["message.status"])  # fmt: skip
    start = clock.now()
    for n in range(30):  # an event a minute, and some of another team / another type
        await add_events(rt, seed.team.id, ("message.status", {"conversation_id": "c", "n": n}))
        await add_events(rt, seed.team.id, ("message.received", {"conversation_id": "c", "n": n}))
        await add_events(rt, seed.other_team.id, ("message.status", {"n": n}))
        clock.advance(minutes=1)
    await settle(engine)
    assert len(receiver.received) == 30
    team = auth(seed.team_key)
    path, template = f"{BASE}/{made['id']}/replay", f"{BASE}/{{id}}/replay"
    since = iso(start + timedelta(minutes=25))
    r = await client.post(path, params={"since": since}, headers=team)
    check(r, template)
    assert r.status_code == 202
    assert r.json() == {"endpoint_id": made["id"], "since": since, "until": iso(clock.now()),
                        "deliveries": 5, "next_since": None}  # fmt: skip
    await settle(engine)
    replayed = receiver.received[30:]
    # Replayed deliveries are resends outside the conversation's order: any order.
    assert sorted(r.json()["data"]["n"] for r in replayed) == [25, 26, 27, 28, 29]
    first_ids = {r.json()["data"]["n"]: r.headers["webhook-id"] for r in receiver.received[:30]}
    assert all(r.headers["webhook-id"] == first_ids[r.json()["data"]["n"]] for r in replayed)

    until = iso(start + timedelta(minutes=2, seconds=30))
    r = await client.post(path, params={"since": iso(start), "until": until}, headers=team)
    assert r.json()["deliveries"] == 3
    # The same key with another query is another request.
    keyed = {**team, "Idempotency-Key": "replay-1"}
    r1 = await client.post(path, params={"since": since}, headers=keyed)
    r2 = await client.post(path, params={"since": iso(start)}, headers=keyed)
    assert r1.status_code == 202
    problem(check, r2, template, 422, "idempotency_key_reused")
    for params in ({}, {"since": "yesterday"}, {"since": "2026-03-15T12:00:00"},
                   {"since": iso(clock.now()), "until": iso(start)}):  # fmt: skip
        r = await client.post(path, params=params, headers=team)
        problem(check, r, template, 422, "validation_error")


async def test_replay_is_capped(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch, clock: FrozenClock,
) -> None:  # fmt: skip
    monkeypatch.setattr(webhooks_api, "REPLAY_MAX", 4)
    made = await create(client, seed.team_key, check, url=receiver.url)
    start = clock.now()
    for n in range(6):
        await add_events(rt, seed.team.id, ("forward.sent", {"n": n}))
        clock.advance(seconds=10)
    r = await client.post(f"{BASE}/{made['id']}/replay", params={"since": iso(start)},
                          headers=auth(seed.team_key))  # fmt: skip
    check(r, f"{BASE}/{{id}}/replay")
    assert r.json()["deliveries"] == 4
    assert r.json()["next_since"] == iso(start + timedelta(seconds=40))
    page = await hooks(rt).list_deliveries(made["id"], None, None, 10)
    assert len(page.items) == 4


async def test_replay_reach_is_bounded(
    client: httpx.AsyncClient, seed: Seed, check: Checker, rt: Runtime, receiver: Receiver,
    clock: FrozenClock,
) -> None:  # fmt: skip
    """Times at the ends of the calendar are 422 (they overflowed to a 500), and a replay
    reaches back ``replay_max_age_seconds`` at most: older ``since`` is refused, not
    scanned."""
    made = await create(client, seed.team_key, check, url=receiver.url)
    path, template = f"{BASE}/{made['id']}/replay", f"{BASE}/{{id}}/replay"
    team = auth(seed.team_key)
    reach = timedelta(seconds=webhook_settings(rt.settings).replay_max_age_seconds)
    refused = [
        {"since": "0001-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"since": iso(clock.now()), "until": "9999-12-31T23:59:59Z"},
        {"since": "9999-12-31T23:59:59Z"},
        {"since": "0001-01-01T00:00:00Z", "until": "0001-01-02T00:00:00Z"},
        {"since": iso(clock.now() - reach - timedelta(seconds=1))},
        {"since": iso(clock.now()), "until": iso(clock.now() + timedelta(hours=1))},
    ]
    for params in refused:
        r = await client.post(path, params=params, headers=team)
        body = problem(check, r, template, 422, "validation_error")
        assert body["field"] in ("since", "until"), params
    r = await client.post(path, params={"since": iso(clock.now() - reach)}, headers=team)
    assert r.status_code == 202, r.text
    check(r, template)


async def test_seq_before_finds_the_start(rt: Runtime, clock: FrozenClock) -> None:
    start = clock.now()
    events = []
    for n in range(37):
        events += await add_events(rt, "t", ("forward.sent", {"n": n}))
        clock.advance(seconds=1)
    for n in (0, 1, 5, 17, 36):
        after = await webhooks_api.seq_before(rt.store, start + timedelta(seconds=n))
        assert after == (events[n - 1].seq if n else 0)
    assert await webhooks_api.seq_before(rt.store, start + timedelta(hours=1)) == events[-1].seq
