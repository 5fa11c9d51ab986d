"""The delivery engine on both stores, driven step by step with a frozen clock: fan-out,
Standard Webhooks signatures, the retry schedule, Retry-After, per-conversation order,
disabling after 5 days, rotation, SSRF at delivery time, crashes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from gateway.clock import FrozenClock
from gateway.models import iso
from gateway.retry import retry_after_seconds
from gateway.runtime import Runtime
from tests.webhooks.conftest import add_endpoint, add_events, hooks, settle
from tests.webhooks.receiver import Answer, Received, Receiver
from webhooks import signing
from webhooks.client import Client
from webhooks.delivery import Engine, delivery_id, lane_of, next_delay
from webhooks.models import Delivery, DeliveryOutcome
from webhooks.settings import DEFAULT_RETRY_SCHEDULE

pytestmark = pytest.mark.anyio
TEAM = "team_a"


def received_msg(conv: str, n: int) -> tuple[str, dict[str, object]]:
    return "message.received", {"id": f"msg_{n}", "conversation_id": conv, "text": f"n{n}"}


async def deliveries(rt: Runtime, endpoint_id: str) -> dict[str, Delivery]:
    page = await hooks(rt).list_deliveries(endpoint_id, None, None, 200)
    return {d.event_id: d for d in page.items}


def verify_signature(secret: str, r: Received) -> None:
    """The signature of a delivery made at any (frozen) time, recomputed by the reference
    library (``verify`` itself insists on a timestamp within 5 minutes of the wall clock)."""
    stamp = int(r.headers["webhook-timestamp"])
    expected = Webhook(secret).sign(
        r.headers["webhook-id"], datetime.fromtimestamp(stamp, UTC), r.body.decode()
    )
    assert expected in r.headers["webhook-signature"].split(" ")


# -- delivery and signature ----------------------------------------------------------------
async def test_delivers_signed_payload(rt: Runtime, engine: Engine, receiver: Receiver) -> None:
    endpoint = await add_endpoint(rt, TEAM, receiver.url + "/hook?x=1")
    (event,) = await add_events(rt, TEAM, received_msg("conv_1", 1))
    await settle(engine)
    (got,) = receiver.received
    assert got.path == "/hook?x=1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"].startswith("messaging-gateway-webhooks/")
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert got.headers["webhook-id"] == delivery_id(event.id, endpoint.id)
    assert got.headers["webhook-timestamp"] == str(int(rt.clock.now().timestamp()))
    # The reference implementation of the spec accepts it (and parses the body).
    payload = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert payload == {
        "type": "message.received",
        "timestamp": iso(event.created_at),
        "data": event.data,
    }
    with pytest.raises(Exception, match="signature"):
        Webhook(signing.new_secret()).verify(got.body, got.headers)
    stored = (await deliveries(rt, endpoint.id))[event.id]
    assert stored.status == "succeeded" and stored.attempts == 1
    assert stored.last_attempt is not None and stored.last_attempt["status_code"] == 204
    assert stored.last_attempt["error"] is None
    assert stored.last_attempt["remote_address"] == "127.0.0.1"


async def test_filters_team_type_and_creation_time(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    (early,) = await add_events(rt, TEAM, received_msg("conv_1", 0))
    clock.advance(seconds=1)
    statuses = await add_endpoint(rt, TEAM, receiver.url + "/status", ["message.status"])
    everything = await add_endpoint(rt, TEAM, receiver.url + "/all")
    await add_endpoint(rt, TEAM, receiver.url + "/off", enabled=False)
    clock.advance(seconds=1)
    await add_events(
        rt,
        TEAM,
        received_msg("conv_1", 1),
        ("message.status", {"id": "msg_1", "conversation_id": "conv_1", "status": "sent"}),
    )
    await add_events(rt, "team_other", received_msg("conv_9", 9))
    await settle(engine)
    got = sorted((r.path, r.json()["type"]) for r in receiver.received)
    assert got == [
        ("/all", "message.received"),
        ("/all", "message.status"),
        ("/status", "message.status"),
    ]
    assert early.id not in await deliveries(rt, everything.id)
    assert len(await deliveries(rt, statuses.id)) == 1


# -- retries -------------------------------------------------------------------------------
async def test_retry_schedule_then_failed(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answer = lambda _: Answer(500, body=b"oops")
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    (event,) = await add_events(rt, TEAM, received_msg("conv_1", 1))
    await settle(engine)
    assert len(receiver.received) == 1
    for n, delay in enumerate(DEFAULT_RETRY_SCHEDULE[1:], start=2):
        stored = (await deliveries(rt, endpoint.id))[event.id]
        assert stored.status == "pending" and stored.attempts == n - 1
        assert stored.due_at == clock.now() + timedelta(seconds=delay)
        assert stored.last_attempt is not None
        assert stored.last_attempt["next_attempt_at"] == iso(stored.due_at)
        clock.advance(seconds=delay - 1)
        await settle(engine)
        assert len(receiver.received) == n - 1  # not due yet
        clock.advance(seconds=1)
        await settle(engine)
        assert len(receiver.received) == n
    stored = (await deliveries(rt, endpoint.id))[event.id]
    assert stored.status == "failed" and stored.attempts == len(DEFAULT_RETRY_SCHEDULE)
    assert stored.due_at is None
    assert stored.last_attempt is not None and stored.last_attempt["error"] == "HTTP 500"
    assert stored.last_attempt["response_body"] == "oops"
    # Every attempt: the same webhook-id, its own timestamp, a valid signature.
    assert {r.headers["webhook-id"] for r in receiver.received} == {
        delivery_id(event.id, endpoint.id)
    }
    assert len({r.headers["webhook-timestamp"] for r in receiver.received}) == 8
    for r in receiver.received:
        verify_signature(endpoint.secret, r)
    clock.advance(days=2)
    await settle(engine)
    assert len(receiver.received) == 8
    detail = await hooks(rt).get_delivery(stored.id)
    assert detail is not None and [a["attempt"] for a in detail.log] == list(range(1, 9))


def test_retry_after_and_next_delay() -> None:
    now = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    schedule = DEFAULT_RETRY_SCHEDULE
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Sun, 15 Mar 2026 12:10:00 GMT", now) == 600
    assert retry_after_seconds("Sun, 15 Mar 2026 11:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None
    assert next_delay(schedule, 1, None) == 5
    assert next_delay(schedule, 1, 120) == 120  # raised
    assert next_delay(schedule, 2, 120) == 300  # never shortened
    assert next_delay(schedule, 1, 10**9) == 36000  # capped at the longest delay
    assert next_delay(schedule, 8, None) is None  # no attempt left
    assert next_delay(schedule, 7, 10**9) == 36000


async def test_retry_after_is_honoured(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answer = lambda _: Answer(429, {"Retry-After": "90"})
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    (event,) = await add_events(rt, TEAM, received_msg("conv_1", 1))
    await settle(engine)
    stored = (await deliveries(rt, endpoint.id))[event.id]
    assert stored.due_at == clock.now() + timedelta(seconds=90)
    assert stored.last_attempt is not None and stored.last_attempt["retry_after"] == 90
    clock.advance(seconds=89)
    await settle(engine)
    assert len(receiver.received) == 1
    receiver.answer = lambda _: Answer(200)
    clock.advance(seconds=1)
    await settle(engine)
    assert (await deliveries(rt, endpoint.id))[event.id].status == "succeeded"


async def test_redirects_are_failures_and_bodies_are_cut(
    rt: Runtime, engine: Engine, receiver: Receiver
) -> None:
    big = b"x" * 10_000
    receiver.answer = lambda r: (
        Answer(302, {"Location": "http://elsewhere.example/"}, b"moved")
        if r.path == "/moved"
        else Answer(200, body=big)
    )
    moved = await add_endpoint(rt, TEAM, receiver.url + "/moved")
    chatty = await add_endpoint(rt, TEAM, receiver.url + "/chatty")
    (event,) = await add_events(rt, TEAM, received_msg("conv_1", 1))
    await settle(engine)
    assert sorted(r.path for r in receiver.received) == ["/chatty", "/moved"]  # not followed
    failed = (await deliveries(rt, moved.id))[event.id].last_attempt
    assert failed is not None and failed["status_code"] == 302
    assert failed["location"] == "http://elsewhere.example/"
    assert "redirects are not followed" in failed["error"]
    ok = (await deliveries(rt, chatty.id))[event.id]
    assert ok.status == "succeeded" and ok.last_attempt is not None
    assert ok.last_attempt["response_body"] == "x" * 4096
    assert ok.last_attempt["response_truncated"] is True


# -- order ---------------------------------------------------------------------------------
def test_lanes() -> None:
    from gateway.models import Event

    now = datetime(2026, 3, 15, tzinfo=UTC)
    msg = Event("evt_1", "message.status", "t", {"conversation_id": "conv_1"}, now)
    quota = Event("evt_2", "quota.threshold", "t", {"member_id": "mem_1", "threshold": 80}, now)
    forward = Event("evt_3", "forward.sent", "t", {"message_id": "msg_1"}, now)
    assert lane_of("whep_1", msg) == "whep_1:conv_1"
    assert lane_of("whep_1", quota) == "whep_1:quota:mem_1"
    assert lane_of("whep_1", forward) is None
    assert delivery_id("evt_1", "whep_1") == delivery_id("evt_1", "whep_1")
    assert delivery_id("evt_1", "whep_1") != delivery_id("evt_1", "whep_2")
    assert len(delivery_id("evt_1", "whep_1")) == 30


async def test_failing_event_holds_back_its_conversation_only(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    failures = {"msg_1": 2}

    def answer(r: Received) -> Answer:
        ident = r.json()["data"]["id"]
        if failures.get(ident, 0) > 0:
            failures[ident] -= 1
            return Answer(503)
        return Answer(204)

    receiver.answer = answer
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    await add_events(
        rt, TEAM, received_msg("conv_a", 1), received_msg("conv_a", 2),
        received_msg("conv_b", 3), received_msg("conv_a", 4),
    )  # fmt: skip
    await settle(engine)
    assert sorted(b["data"]["id"] for b in receiver.bodies()) == ["msg_1", "msg_3"]
    rows = (await deliveries(rt, endpoint.id)).values()
    held = [d for d in rows if d.status == "pending" and d.due_at is None]
    assert len(held) == 2
    clock.advance(seconds=5)
    await settle(engine)
    clock.advance(seconds=300)
    await settle(engine)
    order = [b["data"]["id"] for b in receiver.bodies() if b["data"]["conversation_id"] == "conv_a"]
    assert order == ["msg_1", "msg_1", "msg_1", "msg_2", "msg_4"]
    statuses = {d.status for d in (await deliveries(rt, endpoint.id)).values()}
    assert statuses == {"succeeded"}


async def test_final_failure_releases_the_lane(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    engine.settings = dataclasses.replace(engine.settings, retry_schedule=(0, 1))
    receiver.answer = lambda r: Answer(500 if r.json()["data"]["id"] == "msg_1" else 204)
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    first, second = await add_events(rt, TEAM, received_msg("c", 1), received_msg("c", 2))
    await settle(engine)
    clock.advance(seconds=1)
    await settle(engine)
    assert [b["data"]["id"] for b in receiver.bodies()] == ["msg_1", "msg_1", "msg_2"]
    stored = await deliveries(rt, endpoint.id)
    assert (stored[first.id].status, stored[second.id].status) == ("failed", "succeeded")


async def test_a_changed_url_takes_the_next_attempt(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    engine.settings = dataclasses.replace(engine.settings, poll_interval=0.0)
    receiver.answer = lambda r: Answer(204 if r.path == "/new" else 500)
    endpoint = await add_endpoint(rt, TEAM, receiver.url + "/old")
    (event,) = await add_events(rt, TEAM, received_msg("c1", 1))
    await settle(engine)
    endpoint.url, endpoint.version = receiver.url + "/new", endpoint.version + 1
    assert await hooks(rt).update_endpoint(endpoint)
    clock.advance(seconds=5)
    await settle(engine)
    assert [r.path for r in receiver.received] == ["/old", "/new"]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert (await deliveries(rt, endpoint.id))[event.id].status == "succeeded"


# -- endpoint health ----------------------------------------------------------------------
async def test_disabled_after_five_days_of_failures(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answer = lambda _: Answer(500)
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    start = clock.now()
    await add_events(rt, TEAM, received_msg("c1", 1))
    await settle(engine)
    for day in range(1, 5):
        clock.set(start + timedelta(days=day))
        await add_events(rt, TEAM, received_msg(f"c{day + 1}", day + 1))
        await settle(engine)
        current = await hooks(rt).get_endpoint(endpoint.id)
        assert current is not None and current.enabled and current.failing_since == start
    clock.set(start + timedelta(days=5))
    await add_events(rt, TEAM, received_msg("c9", 9))
    await settle(engine)
    current = await hooks(rt).get_endpoint(endpoint.id)
    assert current is not None and not current.enabled
    assert current.disabled_reason is not None
    assert f"since {iso(start)} failed" in current.disabled_reason
    assert "5 days" in current.disabled_reason and "HTTP 500" in current.disabled_reason
    # Its pending deliveries now fail without a request; new events are not fanned out.
    sent = len(receiver.received)
    await add_events(rt, TEAM, received_msg("c10", 10))
    clock.advance(days=1)
    await settle(engine)
    assert len(receiver.received) == sent
    rows = await deliveries(rt, endpoint.id)
    assert {d.status for d in rows.values()} == {"failed"}
    assert any("endpoint is disabled" in (d.last_attempt or {})["error"] for d in rows.values())


async def test_a_success_restarts_the_five_days(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    ok = {"yes": False}
    receiver.answer = lambda _: Answer(204 if ok["yes"] else 500)
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    start = clock.now()
    await add_events(rt, TEAM, received_msg("c1", 1))
    await settle(engine)
    clock.set(start + timedelta(days=3))
    ok["yes"] = True
    await add_events(rt, TEAM, received_msg("c2", 2))
    await settle(engine)
    current = await hooks(rt).get_endpoint(endpoint.id)
    assert current is not None and current.failing_since is None
    ok["yes"] = False
    clock.set(start + timedelta(days=6))
    await add_events(rt, TEAM, received_msg("c3", 3))
    await settle(engine)
    current = await hooks(rt).get_endpoint(endpoint.id)
    assert current is not None and current.enabled
    assert current.failing_since == clock.now()


# -- secrets ---------------------------------------------------------------------------------
async def test_rotation_signs_with_both_secrets_for_24_hours(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    old = endpoint.secret
    new = signing.rotate(endpoint, clock.now())
    endpoint.version += 1
    assert await hooks(rt).update_endpoint(endpoint)
    await add_events(rt, TEAM, received_msg("c1", 1))
    await settle(engine)
    (got,) = receiver.received
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(got.body, got.headers)
    clock.advance(hours=24)
    await add_events(rt, TEAM, received_msg("c2", 2))
    await settle(engine)
    later = receiver.received[1]
    assert later.headers["webhook-signature"].count("v1,") == 1
    verify_signature(new, later)
    with pytest.raises(AssertionError):
        verify_signature(old, later)


# -- SSRF at delivery ----------------------------------------------------------------------
async def test_every_connection_checks_the_resolved_address(
    rt: Runtime, receiver: Receiver, clock: FrozenClock
) -> None:
    """DNS rebinding: a name that resolves to loopback at delivery time is refused, and
    the client connects to exactly the address it checked (never resolving twice)."""
    answers = {"hooks.test": ["127.0.0.1"]}
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    url = f"http://hooks.test:{receiver.port}/in"
    endpoint = await add_endpoint(rt, TEAM, url)
    strict = Engine(rt, client=Client(allow_private=False, resolver=resolver), owner="strict")
    try:
        (event,) = await add_events(rt, TEAM, received_msg("c1", 1))
        await settle(strict)
        assert receiver.received == []
        stored = (await deliveries(rt, endpoint.id))[event.id]
        assert stored.status == "pending" and stored.last_attempt is not None
        assert stored.last_attempt["error"] == (
            "refused: hooks.test resolves to 127.0.0.1, a loopback address"
        )
    finally:
        await strict.client.aclose()
    # Allowed (as in the demo): the request goes to the resolved address with the name
    # in Host, and the resolver ran once per new connection.
    relaxed = Engine(rt, client=Client(allow_private=True, resolver=resolver), owner="relaxed")
    try:
        calls.clear()
        clock.advance(seconds=11)  # the retry is due, the strict engine's fan-out lease over
        await add_events(rt, TEAM, received_msg("c2", 2))
        await settle(relaxed)
    finally:
        await relaxed.client.aclose()
    assert [r.headers["host"] for r in receiver.received] == [f"hooks.test:{receiver.port}"] * 2
    assert calls == ["hooks.test"]  # the second request reused the kept-alive connection


# -- endpoints that went away ---------------------------------------------------------------
async def test_deleted_endpoint_deliveries_end_quietly(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    receiver.answer = lambda _: Answer(500)
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    await add_events(rt, TEAM, received_msg("c1", 1), received_msg("c1", 2))
    await settle(engine)
    assert await hooks(rt).delete_endpoint(endpoint.id)
    clock.advance(seconds=5)
    await settle(engine)
    assert len(receiver.received) == 1
    assert await hooks(rt).lease_deliveries(clock.now(), "t", clock.now(), 10) == []


# -- crashes and several engines -----------------------------------------------------------
async def test_an_expired_lease_is_delivered_again_with_the_same_id(
    rt: Runtime, engine: Engine, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint = await add_endpoint(rt, TEAM, receiver.url)
    (event,) = await add_events(rt, TEAM, received_msg("c1", 1))
    # A process fanned out and leased the delivery, then died before its attempt ended.
    version = await hooks(rt).endpoints_version()
    from webhooks.delivery import new_delivery

    dead = new_delivery(event, endpoint, clock.now())
    assert await hooks(rt).lease_fanout("dead", clock.now(), timedelta(seconds=10)) == 0
    leased = await hooks(rt).fanout(
        0, event.seq, version, [dead], "dead:1", clock.now() + timedelta(seconds=60), 10,
        clock.now(),
    )  # fmt: skip
    assert leased == [dead]
    await settle(engine)  # the lease still runs: nothing yet
    assert receiver.received == []
    clock.advance(seconds=60)
    await settle(engine)
    (got,) = receiver.received
    assert got.headers["webhook-id"] == dead.id
    stored = (await deliveries(rt, endpoint.id))[event.id]
    assert stored.status == "succeeded" and stored.attempts == 2
    # The dead process's late answer changes nothing.
    outcome = DeliveryOutcome("failed", {"at": "late"}, None, False)
    assert await hooks(rt).finish_delivery(dead, outcome, clock.now()) is None


async def test_two_engines_deliver_each_event_once(rt: Runtime, receiver: Receiver) -> None:
    endpoints = [await add_endpoint(rt, TEAM, receiver.url + f"/{i}") for i in range(2)]
    engines = [Engine(rt, client=Client(allow_private=True), owner=f"e{i}") for i in range(2)]
    try:
        events = await add_events(rt, TEAM, *(received_msg(f"c{i % 5}", i) for i in range(40)))
        for _ in range(50):  # each round moves every lane by one event
            started = 0
            for e in engines:
                started += await e.fanout_once() + await e.deliver_due()
            for e in engines:
                await e.drain()
            if not started:
                break
    finally:
        for e in engines:
            await e.client.aclose()
    ids = sorted(r.headers["webhook-id"] for r in receiver.received)
    assert ids == sorted(delivery_id(ev.id, ep.id) for ev in events for ep in endpoints)
