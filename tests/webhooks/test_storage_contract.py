"""The contract of the webhooks' storage role (``WebhookStore``): endpoints, the fan-out
cursor, lanes, leases and the delivery log. Every case runs through the role on both store
backends: SQLite and a real Redis server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.errors import Conflict
from gateway.ids import new_id
from gateway.store import make_store
from webhooks.models import WEBHOOK_LOG_KEEP, Delivery, DeliveryOutcome, WebhookEndpoint
from webhooks.storage import WEBHOOK_STORE, WebhookStore

pytestmark = pytest.mark.anyio
LEASE = timedelta(seconds=60)


@pytest.fixture
async def hooks(url: str) -> AsyncIterator[WebhookStore]:
    """The role on an open, empty store of the backend under test."""
    store = make_store(url)
    await store.open()
    try:
        yield await WEBHOOK_STORE.open(store)
    finally:
        await store.aclose()


def endpoint(clock: FrozenClock, team_id: str = "team_a", **kw: object) -> WebhookEndpoint:
    data: dict[str, object] = dict(
        id=new_id("whep"),
        team_id=team_id,
        url="https://hooks.example.com/in",
        events=[],
        enabled=True,
        secret="whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0",
        created_at=clock.now(),
        updated_at=clock.now(),
    )
    data.update(kw)
    return WebhookEndpoint(**data)  # type: ignore[arg-type]


def delivery(ep: WebhookEndpoint, seq: int, lane: str | None, clock: FrozenClock) -> Delivery:
    ident = f"whd_{ep.id[-8:]}{seq:06d}"
    return Delivery(
        ident,
        ep.id,
        ep.team_id,
        f"evt_{seq}",
        "message.received",
        seq,
        lane if lane is not None else ident,
        clock.now(),
    )


def ok(clock: FrozenClock, code: int = 204) -> DeliveryOutcome:
    return DeliveryOutcome(
        "succeeded", {"at": clock.now().isoformat(), "status_code": code}, None, True
    )


def failed(clock: FrozenClock, final: bool = False, retry_in: float = 5) -> DeliveryOutcome:
    record = {"at": clock.now().isoformat(), "status_code": 500}
    if final:
        return DeliveryOutcome("failed", record, None, False)
    return DeliveryOutcome("pending", record, clock.now() + timedelta(seconds=retry_in), False)


async def fan_out(
    hooks: WebhookStore, clock: FrozenClock, deliveries: list[Delivery], limit: int = 100
) -> list[Delivery]:
    """Fan ``deliveries`` out as the next batch (cursor and version as they stand)."""
    cursor = await hooks.lease_fanout("me", clock.now(), LEASE)
    assert cursor is not None
    new_seq = max([cursor, *(d.seq for d in deliveries)])
    version = await hooks.endpoints_version()
    leased = await hooks.fanout(
        cursor, new_seq, version, deliveries, "tok-f", clock.now() + LEASE, limit, clock.now()
    )
    assert leased is not None
    return leased


# -- endpoints ---------------------------------------------------------------------------
async def test_endpoint_round_trip_and_listing(hooks: WebhookStore, clock: FrozenClock) -> None:
    v0 = await hooks.endpoints_version()
    a = endpoint(clock, description="CRM", events=["message.received"])
    await hooks.create_endpoint(a, max_per_team=5)
    clock.advance(seconds=1)
    b = endpoint(clock)
    c = endpoint(clock, team_id="team_b")
    await hooks.create_endpoint(b, 5)
    await hooks.create_endpoint(c, 5)
    assert await hooks.endpoints_version() != v0
    assert await hooks.get_endpoint(a.id) == a
    assert await hooks.get_endpoint("whep_nope") is None
    assert await hooks.list_endpoints("team_a") == [a, b]
    assert await hooks.list_endpoints("team_b") == [c]
    assert [e.id for e in await hooks.list_endpoints(None)] == [a.id, b.id, c.id]


async def test_endpoint_limit_per_team(hooks: WebhookStore, clock: FrozenClock) -> None:
    await hooks.create_endpoint(endpoint(clock), max_per_team=2)
    await hooks.create_endpoint(endpoint(clock), max_per_team=2)
    with pytest.raises(Conflict) as exc:
        await hooks.create_endpoint(endpoint(clock), max_per_team=2)
    assert exc.value.code == "webhook_endpoint_limit"
    await hooks.create_endpoint(endpoint(clock, team_id="team_b"), max_per_team=2)
    results = await asyncio.gather(
        *(hooks.create_endpoint(endpoint(clock, team_id="team_c"), 3) for _ in range(6)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 3
    assert len(await hooks.list_endpoints("team_c")) == 3


async def test_endpoint_update_is_compare_and_set(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    version = await hooks.endpoints_version()
    ep.url, ep.version = "https://other.example.com/", 2
    assert await hooks.update_endpoint(ep)
    assert await hooks.endpoints_version() != version
    stale = endpoint(clock, id=ep.id, url="https://stale.example.com/", version=2)
    assert not await hooks.update_endpoint(stale)  # stored version is 2, not 1
    got = await hooks.get_endpoint(ep.id)
    assert got is not None and got.url == "https://other.example.com/" and got.version == 2
    assert not await hooks.update_endpoint(endpoint(clock, version=2))  # unknown id


async def test_failing_since_follows_attempts_and_resets(
    hooks: WebhookStore, clock: FrozenClock
) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    first, second, third = (delivery(ep, n, None, clock) for n in (1, 2, 3))
    await fan_out(hooks, clock, [first, second, third])
    start = clock.now()
    result = await hooks.finish_delivery(first, failed(clock), clock.now())
    assert result is not None and result.failing_since == start
    clock.advance(hours=1)
    result = await hooks.finish_delivery(second, failed(clock, final=True), clock.now())
    assert result is not None and result.failing_since == start  # kept: still failing
    stored = await hooks.get_endpoint(ep.id)
    assert stored is not None and stored.failing_since == start
    version = await hooks.endpoints_version()
    result = await hooks.finish_delivery(third, ok(clock), clock.now())
    assert result is not None and result.failing_since is None
    # Health is not a change of the endpoint: caches keyed by the version stay valid.
    assert await hooks.endpoints_version() == version

    (again,) = await hooks.lease_deliveries(clock.now(), "t2", clock.now() + LEASE, 10)
    await hooks.finish_delivery(again, failed(clock), clock.now())
    stored = await hooks.get_endpoint(ep.id)
    assert stored is not None and stored.failing_since == clock.now()
    stored.version += 1
    assert await hooks.update_endpoint(stored, reset_failing=True)
    stored = await hooks.get_endpoint(ep.id)
    assert stored is not None and stored.failing_since is None


async def test_delete_endpoint_removes_its_deliveries(
    hooks: WebhookStore, clock: FrozenClock
) -> None:
    ep, keep = endpoint(clock), endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    await hooks.create_endpoint(keep, 5)
    mine = [delivery(ep, n, f"{ep.id}:conv", clock) for n in (1, 2)]
    theirs = delivery(keep, 3, None, clock)
    await fan_out(hooks, clock, [*mine, theirs], limit=0)
    version = await hooks.endpoints_version()
    assert await hooks.delete_endpoint(ep.id)
    assert not await hooks.delete_endpoint(ep.id)
    assert await hooks.endpoints_version() != version
    assert await hooks.get_endpoint(ep.id) is None
    assert await hooks.get_delivery(mine[0].id) is None
    assert (await hooks.list_deliveries(ep.id, None, None, 10)).items == []
    # Only the other endpoint's delivery is still due.
    leased = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10)
    assert [d.id for d in leased] == [theirs.id]


# -- fan-out -----------------------------------------------------------------------------
async def test_fanout_lease_is_exclusive_until_it_expires(
    hooks: WebhookStore, clock: FrozenClock
) -> None:
    assert await hooks.lease_fanout("a", clock.now(), timedelta(seconds=10)) == 0
    assert await hooks.lease_fanout("b", clock.now(), timedelta(seconds=10)) is None
    clock.advance(seconds=5)
    assert await hooks.lease_fanout("a", clock.now(), timedelta(seconds=10)) == 0  # renew
    clock.advance(seconds=9)
    assert await hooks.lease_fanout("b", clock.now(), timedelta(seconds=10)) is None
    clock.advance(seconds=2)
    assert await hooks.lease_fanout("b", clock.now(), timedelta(seconds=10)) == 0


async def test_fanout_checks_cursor_and_endpoints_version(
    hooks: WebhookStore, clock: FrozenClock
) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    version = await hooks.endpoints_version()
    until = clock.now() + LEASE
    d1 = delivery(ep, 1, None, clock)
    assert await hooks.fanout(5, 9, version, [d1], "t", until, 10, clock.now()) is None
    assert await hooks.fanout(0, 9, version + 1, [d1], "t", until, 10, clock.now()) is None
    assert await hooks.get_delivery(d1.id) is None  # nothing written
    leased = await hooks.fanout(0, 9, version, [d1], "t", until, 10, clock.now())
    assert leased is not None and [d.id for d in leased] == [d1.id]
    assert await hooks.lease_fanout("x", clock.now(), LEASE) == 9
    # The same batch again (a second process that read the same events) is refused.
    assert await hooks.fanout(0, 9, version, [d1], "t", until, 10, clock.now()) is None
    # An id that already exists is skipped, not reset (e.g. added by a replay first).
    again = delivery(ep, 1, None, clock)
    assert await hooks.fanout(9, 12, version, [again], "t", until, 10, clock.now()) == []
    stored = await hooks.get_delivery(d1.id)
    assert stored is not None and stored.token == "t" and stored.attempts == 1


async def test_fanout_leases_lane_heads_only(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    lane_a, lane_b = f"{ep.id}:conv_a", f"{ep.id}:conv_b"
    a1, a2, b1, u1, u2 = (
        delivery(ep, 1, lane_a, clock),
        delivery(ep, 2, lane_a, clock),
        delivery(ep, 3, lane_b, clock),
        delivery(ep, 4, None, clock),
        delivery(ep, 5, None, clock),
    )
    leased = await fan_out(hooks, clock, [a1, a2, b1, u1, u2], limit=3)
    assert [d.id for d in leased] == [a1.id, b1.id, u1.id]
    assert all(d.attempts == 1 and d.token == "tok-f" for d in leased)
    held = await hooks.get_delivery(a2.id)
    assert held is not None and held.status == "pending" and held.due_at is None
    assert held.token is None and held.attempts == 0
    # A head beyond the lease limit is due now for anyone.
    later = await hooks.lease_deliveries(clock.now(), "t2", clock.now() + LEASE, 10)
    assert [d.id for d in later] == [u2.id]
    # The held-back one never comes while a1 is unfinished, even when a1's lease expires.
    clock.advance(seconds=61)
    again = await hooks.lease_deliveries(clock.now(), "t3", clock.now() + LEASE, 10)
    assert {d.id for d in again} == {a1.id, b1.id, u1.id, u2.id}
    assert {d.id: d.attempts for d in again}[a1.id] == 2


# -- leases and attempts -----------------------------------------------------------------
async def test_concurrent_leases_never_share_a_delivery(
    hooks: WebhookStore, url: str, clock: FrozenClock
) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    await fan_out(hooks, clock, [delivery(ep, n, None, clock) for n in range(1, 41)], limit=0)
    second = make_store(url)  # a second process on the same store
    await second.open()
    other = await WEBHOOK_STORE.open(second)
    try:
        until = clock.now() + LEASE
        batches = await asyncio.gather(
            *(
                (hooks if i % 2 else other).lease_deliveries(clock.now(), f"t{i}", until, 7)
                for i in range(8)
            )
        )
    finally:
        await second.aclose()
    ids = [d.id for batch in batches for d in batch]
    assert len(ids) == len(set(ids)) == 40


async def test_finish_needs_the_lease(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    (d,) = await fan_out(hooks, clock, [delivery(ep, 1, None, clock)])
    clock.advance(seconds=61)  # the lease expired and someone else took it
    (taken,) = await hooks.lease_deliveries(clock.now(), "t2", clock.now() + LEASE, 10)
    assert await hooks.finish_delivery(d, ok(clock), clock.now()) is None
    stored = await hooks.get_delivery(d.id)
    assert stored is not None and stored.status == "pending" and stored.log == []
    assert await hooks.finish_delivery(taken, ok(clock), clock.now()) is not None
    assert await hooks.finish_delivery(taken, ok(clock), clock.now()) is None  # once


async def test_lane_order_retry_then_promotion(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    lane = f"{ep.id}:conv"
    first, second, third = (delivery(ep, n, lane, clock) for n in (1, 2, 3))
    (head,) = await fan_out(hooks, clock, [first, second, third])
    result = await hooks.finish_delivery(head, failed(clock, retry_in=5), clock.now())
    assert result is not None and result.promoted is None
    stored = await hooks.get_delivery(first.id)
    assert stored is not None and stored.due_at == clock.now() + timedelta(seconds=5)
    assert stored.token is None and stored.last_attempt == {
        "at": clock.now().isoformat(),
        "status_code": 500,
    }
    assert await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10) == []
    clock.advance(seconds=5)
    (head,) = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10)
    assert head.id == first.id and head.attempts == 2
    result = await hooks.finish_delivery(head, failed(clock, final=True), clock.now())
    assert result is not None and result.promoted == second.id  # failed: the lane moves on
    (head,) = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10)
    assert head.id == second.id and head.attempts == 1
    result = await hooks.finish_delivery(head, ok(clock), clock.now())
    assert result is not None and result.promoted == third.id
    (head,) = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10)
    result = await hooks.finish_delivery(head, ok(clock), clock.now())
    assert result is not None and result.promoted is None
    statuses = {d.id: d.status for d in (await hooks.list_deliveries(ep.id, None, None, 10)).items}
    assert statuses == {first.id: "failed", second.id: "succeeded", third.id: "succeeded"}
    # A later event of the lane is a head at once.
    (fourth,) = await fan_out(hooks, clock, [delivery(ep, 4, lane, clock)])
    assert fourth.token == "tok-f"


async def test_attempt_log_keeps_the_newest(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    (d,) = await fan_out(hooks, clock, [delivery(ep, 1, None, clock)])
    for n in range(WEBHOOK_LOG_KEEP + 3):
        outcome = DeliveryOutcome("pending", {"n": n}, clock.now(), False)
        assert await hooks.finish_delivery(d, outcome, clock.now()) is not None
        (d,) = await hooks.lease_deliveries(clock.now(), f"t{n}", clock.now() + LEASE, 1)
    stored = await hooks.get_delivery(d.id)
    assert stored is not None
    assert [r["n"] for r in stored.log] == list(range(3, WEBHOOK_LOG_KEEP + 3))
    assert stored.attempts == WEBHOOK_LOG_KEEP + 4 and stored.last_attempt == {
        "n": WEBHOOK_LOG_KEEP + 2
    }


# -- retry now and replay ----------------------------------------------------------------
async def test_requeue(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    lane = f"{ep.id}:conv"
    done, waiting, held, flying = (delivery(ep, n, lane, clock) for n in (1, 2, 3, 4))
    flying.lane = flying.id
    scheduled = delivery(ep, 5, None, clock)
    (first, fly, sched) = await fan_out(hooks, clock, [done, waiting, held, flying, scheduled])
    await hooks.finish_delivery(first, ok(clock), clock.now())  # waiting is due now
    (w,) = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 1)
    await hooks.finish_delivery(w, failed(clock, retry_in=300), clock.now())
    await hooks.finish_delivery(sched, failed(clock, retry_in=3600), clock.now())
    missing = delivery(ep, 6, lane, clock)
    clock.advance(seconds=1)
    out = {d.id: d for d in await hooks.requeue_deliveries(
        [done, waiting, held, flying, scheduled, missing], clock.now())}  # fmt: skip
    # Final: a new series, in no lane. Missing: added in no lane.
    for ident in (done.id, missing.id):
        assert out[ident].status == "pending" and out[ident].attempts == 0
        assert out[ident].lane == ident and out[ident].due_at == clock.now()
    # Waiting for a retry: due now, attempts kept; lane kept (it is the lane's head).
    assert out[waiting.id].due_at == clock.now() and out[waiting.id].attempts == 1
    assert out[waiting.id].lane == lane
    assert out[scheduled.id].due_at == clock.now()
    # Held back, in flight: left alone.
    assert out[held.id].due_at is None and out[held.id].attempts == 0
    assert out[flying.id].token == "tok-f" and fly.id == flying.id
    leased = await hooks.lease_deliveries(clock.now(), "t", clock.now() + LEASE, 10)
    assert {d.id for d in leased} == {done.id, waiting.id, scheduled.id, missing.id}
    by_id = {d.id: d for d in leased}
    result = await hooks.finish_delivery(by_id[done.id], ok(clock), clock.now())
    assert result is not None and result.promoted is None  # done is in no lane any more
    listed = await hooks.list_deliveries(ep.id, None, None, 10)
    assert [d.seq for d in listed.items] == [6, 5, 4, 3, 2, 1]


async def test_list_deliveries_pages_and_filters(hooks: WebhookStore, clock: FrozenClock) -> None:
    ep, other = endpoint(clock), endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    await hooks.create_endpoint(other, 5)
    mine = [delivery(ep, n, None, clock) for n in range(1, 8)]
    leased = await fan_out(hooks, clock, [*mine, delivery(other, 8, None, clock)])
    for d in leased[:3]:
        await hooks.finish_delivery(d, ok(clock), clock.now())
    seen, cursor = [], None
    while True:
        page = await hooks.list_deliveries(ep.id, None, cursor, 3)
        seen += [d.seq for d in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    page = await hooks.list_deliveries(ep.id, "succeeded", None, 2)
    assert [d.seq for d in page.items] == [3, 2] and page.next_cursor is not None
    page = await hooks.list_deliveries(ep.id, "succeeded", page.next_cursor, 2)
    assert [d.seq for d in page.items] == [1] and page.next_cursor is None
    page = await hooks.list_deliveries(ep.id, "failed", None, 2)
    assert page.items == [] and page.next_cursor is None
    first = (await hooks.list_deliveries(ep.id, "succeeded", None, 1)).items[0]
    assert first.status == "succeeded" and first.last_attempt is not None and first.log == []


# -- retention ---------------------------------------------------------------------------
async def test_prune_deliveries_keeps_pending_and_recent(
    hooks: WebhookStore, clock: FrozenClock
) -> None:
    ep = endpoint(clock)
    await hooks.create_endpoint(ep, 5)
    old_ok, old_failed, old_retrying, requeued = (
        delivery(ep, n, None, clock) for n in (1, 2, 3, 4)
    )
    leased = {d.id: d for d in await fan_out(hooks, clock, [old_ok, old_failed, old_retrying,
                                                              requeued])}  # fmt: skip
    await hooks.finish_delivery(leased[old_ok.id], ok(clock), clock.now())
    await hooks.finish_delivery(leased[old_failed.id], failed(clock, final=True), clock.now())
    await hooks.finish_delivery(leased[old_retrying.id], failed(clock, retry_in=3600), clock.now())
    await hooks.finish_delivery(leased[requeued.id], ok(clock), clock.now())
    clock.advance(days=31)
    await hooks.requeue_deliveries([requeued], clock.now())  # pending again: kept
    recent = delivery(ep, 5, None, clock)
    (r,) = await fan_out(hooks, clock, [recent])
    await hooks.finish_delivery(r, ok(clock), clock.now())
    before = clock.now() - timedelta(days=30)
    # In batches of one: two finished deliveries are old enough.
    assert await hooks.prune_deliveries(before, 1) == 1
    assert await hooks.prune_deliveries(before, 1) == 1
    assert await hooks.prune_deliveries(before, 1) == 0
    assert await hooks.get_delivery(old_ok.id) is None
    assert await hooks.get_delivery(old_failed.id) is None
    listed = await hooks.list_deliveries(ep.id, None, None, 10)
    assert [d.seq for d in listed.items] == [5, 4, 3]  # recent, requeued, still retrying
