"""The Store contract of the send pipeline's batched writes, on both backends:
``lease_jobs`` (many due jobs in one write), ``complete_send`` (the message recorded sent
and its job acked in one write) and ``update_by_carrier_id`` (a delivery report found and
applied in one write)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.ids import new_id
from gateway.models import Job, Member, Message
from gateway.store import make_store
from gateway.store.base import StatusUpdate, Store
from gateway.store.redis import RedisStore
from gateway.store.sqlite import SqliteStore
from tests.gateway.store.test_contract import charge, job, message, setup

pytestmark = pytest.mark.anyio

VIS = timedelta(seconds=30)


async def queued(store: Store, clock: FrozenClock, n: int = 1) -> tuple[Member, list[Message]]:
    """``n`` outbound messages submitted (each with its send job)."""
    t, m, conv = await setup(store, clock, limit=10**9)
    msgs = []
    for _ in range(n):
        msg = message(clock, m, conv)
        await store.submit_outbound(msg, charge(t, m), job(clock, message_id=msg.id), [])
        msgs.append(msg)
    return m, msgs


async def sent(store: Store, clock: FrozenClock, carrier_id: str, **kw: object) -> Message:
    """One message recorded as sent with ``carrier_id`` (on connector ``c1``)."""
    _m, [msg] = await queued(store, clock)
    update = StatusUpdate(status="sent", carrier_id=carrier_id, **kw)  # type: ignore[arg-type]
    assert await store.update_message(msg.id, update, clock.now()) is not None
    return msg


# -- lease_jobs -----------------------------------------------------------------------------
async def test_lease_jobs_takes_the_earliest_due_up_to_the_limit(
    store: Store, clock: FrozenClock
) -> None:
    start = clock.now()
    jobs = [Job(new_id("job"), "send", {"n": i}, start + timedelta(seconds=i), 3) for i in range(5)]
    for j in reversed(jobs):
        await store.enqueue(j)
    later = Job(new_id("job"), "send", {"n": 99}, start + timedelta(hours=1), 3)
    await store.enqueue(later)
    clock.advance(seconds=10)
    first = await store.lease_jobs(clock.now(), "w", VIS, 3)
    assert [j.id for j in first] == [j.id for j in jobs[:3]]
    assert all(j.state == "leased" and j.attempts == 1 and j.token for j in first)
    assert len({j.token for j in first}) == 3  # one lease (token) per job
    rest = await store.lease_jobs(clock.now(), "w", VIS, 10)
    assert [j.id for j in rest] == [j.id for j in jobs[3:]]  # the later one is not due
    assert await store.lease_jobs(clock.now(), "w", VIS, 10) == []
    assert await store.lease_jobs(clock.now() + timedelta(hours=2), "w", VIS, 0) == []
    assert (await store.job_counts()) == {"ready": 1, "leased": 5, "dead": 0}
    for j in first + rest:  # each lease is a real one: its token acks it
        assert await store.ack_job(j.id, j.token or "")


async def test_lease_jobs_takes_over_expired_leases_and_buries_exhausted_ones(
    store: Store, clock: FrozenClock
) -> None:
    tired = job(clock, max_attempts=1, n="tired")
    again = job(clock, max_attempts=3, n="again")
    await store.enqueue(tired)
    await store.enqueue(again)
    assert len(await store.lease_jobs(clock.now(), "dead-worker", VIS, 5)) == 2
    clock.advance(seconds=31)
    fresh = Job(new_id("job"), "send", {"n": "fresh"}, clock.now(), 3)
    await store.enqueue(fresh)
    got = await store.lease_jobs(clock.now(), "w2", VIS, 5)
    # Expired leases are due since their lease ended, before the job due only now; the
    # one whose every attempt is used is buried on the way, not handed out.
    assert [j.id for j in got] == [again.id, fresh.id]
    assert got[0].attempts == 2
    dead = await store.list_dead_jobs(10)
    assert [d.id for d in dead] == [tired.id] and "lease expired" in (dead[0].last_error or "")


async def test_a_ready_job_goes_before_an_expired_lease_due_at_the_same_time(
    store: Store, clock: FrozenClock
) -> None:
    leased = job(clock)
    await store.enqueue(leased)
    assert await store.lease_jobs(clock.now(), "w1", VIS, 1)
    ready = Job(new_id("job"), "send", {}, clock.now() + VIS, 3)
    await store.enqueue(ready)
    clock.advance(seconds=VIS.total_seconds())
    got = await store.lease_jobs(clock.now(), "w2", VIS, 1)
    assert [j.id for j in got] == [ready.id]
    assert [j.id for j in await store.lease_jobs(clock.now(), "w2", VIS, 1)] == [leased.id]


async def test_concurrent_batch_leases_hand_out_each_job_once(url: str, clock: FrozenClock) -> None:
    stores = [make_store(url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        for _ in range(60):
            await stores[0].enqueue(job(clock))

        async def drain(s: Store, name: str) -> list[str]:
            got: list[str] = []
            while batch := await s.lease_jobs(clock.now(), name, VIS, 7):
                got += [j.id for j in batch]
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
        leased = [i for r in results for i in r]
        assert len(leased) == 60 and len(set(leased)) == 60
    finally:
        for s in stores:
            await s.aclose()


# -- complete_send --------------------------------------------------------------------------
async def test_complete_send_records_the_send_and_acks_the_job(
    store: Store, clock: FrozenClock
) -> None:
    _m, [msg] = await queued(store, clock)
    [leased] = await store.lease_jobs(clock.now(), "w", VIS, 1)
    await store.update_message(msg.id, StatusUpdate(status="sending"), clock.now())
    clock.advance(seconds=1)
    update = StatusUpdate(status="sent", carrier_id="p1", meta={"parts": 2}, part_ids=("p2",))
    result = await store.complete_send(msg.id, update, leased.id, leased.token or "", clock.now())
    assert result is not None
    after, changed = result
    assert changed and after.status == "sent" and after.carrier_id == "p1"
    assert after.meta["parts"] == 2 and after.updated_at == clock.now()
    assert await store.get_job(leased.id) is None
    assert (await store.job_counts()) == {"ready": 0, "leased": 0, "dead": 0}
    for part in ("p1", "p2"):
        found = await store.message_by_carrier_id("c1", part)
        assert found is not None and found.id == msg.id
    assert [h.status for h in await store.status_history(msg.id)] == ["accepted", "sending", "sent"]
    events = [e for e in await store.list_events(0, 100) if e.type == "message.status"]
    assert [e.data["status"] for e in events] == ["sending", "sent"]
    assert events[-1].seq > events[0].seq and events[-1].data == after.public()


async def test_complete_send_leaves_a_job_whose_lease_moved_on(
    store: Store, clock: FrozenClock
) -> None:
    _m, [msg] = await queued(store, clock)
    [first] = await store.lease_jobs(clock.now(), "slow", VIS, 1)
    clock.advance(seconds=31)
    [second] = await store.lease_jobs(clock.now(), "w2", VIS, 1)
    assert second.id == first.id
    # The slow worker's send still happened: recorded, but the job is the new holder's.
    update = StatusUpdate(status="sent", carrier_id="late")
    result = await store.complete_send(msg.id, update, first.id, first.token or "", clock.now())
    assert result is not None and result[0].status == "sent" and result[1]
    still = await store.get_job(first.id)
    assert still is not None and still.state == "leased" and still.token == second.token
    assert await store.ack_job(second.id, second.token or "")


async def test_complete_send_of_a_missing_message_still_acks_the_job(
    store: Store, clock: FrozenClock
) -> None:
    j = job(clock, message_id="msg_gone")
    await store.enqueue(j)
    [leased] = await store.lease_jobs(clock.now(), "w", VIS, 1)
    update = StatusUpdate(status="sent", carrier_id="x")
    assert (
        await store.complete_send("msg_gone", update, j.id, leased.token or "", clock.now()) is None
    )
    assert await store.get_job(j.id) is None


async def test_complete_send_can_fail_and_release(store: Store, clock: FrozenClock) -> None:
    _m, [msg] = await queued(store, clock)
    [leased] = await store.lease_jobs(clock.now(), "w", VIS, 1)
    error = {"code": "rejected", "message": "no", "carrier_code": "8", "retryable": False}
    update = StatusUpdate(status="failed", error=error, release=True)
    result = await store.complete_send(msg.id, update, leased.id, leased.token or "", clock.now())
    assert result is not None and result[0].status == "failed" and result[0].error == error
    assert result[0].charged_period is None and await store.get_job(leased.id) is None
    lines, _ = await store.ledger(msg.team_id, "2026-03")
    assert [ln.used for ln in lines] == [0]


# -- update_by_carrier_id -------------------------------------------------------------------
async def test_update_by_carrier_id_applies_a_report(store: Store, clock: FrozenClock) -> None:
    msg = await sent(store, clock, "abc")
    clock.advance(seconds=2)
    update = StatusUpdate(status="delivered", part="abc")
    result = await store.update_by_carrier_id("c1", "abc", update, clock.now())
    assert result is not None
    after, changed = result
    assert changed and after.id == msg.id and after.status == "delivered"
    assert after.updated_at == clock.now()
    stored = await store.get_message(msg.id)
    assert stored is not None and stored.status == "delivered"
    assert [h.status for h in await store.status_history(msg.id)][-1] == "delivered"
    # Forward only, as update_message: a late "sent" changes nothing.
    late = await store.update_by_carrier_id("c1", "abc", StatusUpdate(status="sent"), clock.now())
    assert late is not None and late[0].status == "delivered" and not late[1]
    events = [e for e in await store.list_events(0, 100) if e.type == "message.status"]
    assert [e.data["status"] for e in events] == ["sent", "delivered"]


async def test_update_by_carrier_id_of_an_unknown_id(store: Store, clock: FrozenClock) -> None:
    await sent(store, clock, "abc")
    update = StatusUpdate(status="delivered")
    assert await store.update_by_carrier_id("c1", "nope", update, clock.now()) is None
    assert await store.update_by_carrier_id("c2", "abc", update, clock.now()) is None


async def test_a_report_arriving_at_another_process(url: str, clock: FrozenClock) -> None:
    """The SMSC hands the report to a bind of another process (another store connection,
    which did not record the carrier id): it is found and applied all the same, and a
    report for an id nobody recorded is None there too."""
    store, other = make_store(url), make_store(url)
    await store.open()
    await other.open()
    try:
        msg = await sent(store, clock, "xyz")
        update = StatusUpdate(status="delivered", part="xyz")
        result = await other.update_by_carrier_id("c1", "xyz", update, clock.now())
        assert result is not None and result[0].id == msg.id and result[1]
        stored = await store.get_message(msg.id)
        assert stored is not None and stored.status == "delivered"
        assert await other.update_by_carrier_id("c1", "nope", update, clock.now()) is None
        # The process that recorded it sees the status moved on (its doc is stale now).
        again = await store.update_by_carrier_id("c1", "xyz", update, clock.now())
        assert again is not None and again[0].status == "delivered" and not again[1]
    finally:
        await store.aclose()
        await other.aclose()


async def test_a_report_about_an_earlier_connector_changes_nothing(
    store: Store, clock: FrozenClock
) -> None:
    msg = await sent(store, clock, "old-1")
    # The message moved on to another connector (as a fallback reroute does).
    moved = StatusUpdate(status="sending", connector_id="c2")
    assert await store.update_message(msg.id, moved, clock.now()) is not None
    before = await store.get_message(msg.id)
    assert before is not None and before.connector_id == "c2"
    error = {"code": "unreachable", "message": "UNDELIV", "carrier_code": "1", "retryable": False}
    update = StatusUpdate(status="failed", error=error)
    result = await store.update_by_carrier_id("c1", "old-1", update, clock.now())
    assert result is not None and result[0].id == msg.id and not result[1]
    assert await store.get_message(msg.id) == before


async def test_reports_of_one_moment_all_count(store: Store, clock: FrozenClock) -> None:
    """Reports applied at the same time (one batch on SQLite) each see the others: three
    parts delivered together deliver the message; other messages' reports go along."""
    _m, [msg, other] = await queued(store, clock, 2)
    parts = StatusUpdate(status="sent", carrier_id="p1", meta={"parts": 3}, part_ids=("p2", "p3"))
    await store.update_message(msg.id, parts, clock.now())
    await store.update_message(
        other.id, StatusUpdate(status="sent", carrier_id="solo"), clock.now()
    )
    reports = [("p1", "delivered"), ("solo", "delivered"), ("p2", "delivered"), ("p3", "delivered")]
    results = await asyncio.gather(
        *(
            store.update_by_carrier_id("c1", cid, StatusUpdate(status=s, part=cid), clock.now())
            for cid, s in reports
        ),
        store.update_by_carrier_id("c1", "nope", StatusUpdate(status="delivered"), clock.now()),
    )
    statuses = [r[0].status if r else None for r in results]
    assert statuses[1] == "delivered" and statuses[4] is None
    # Whichever part's report is applied last delivers the message (on Redis, concurrent
    # compare-and-set retries decide that order; on SQLite the batch order does).
    assert sorted(str(statuses[i]) for i in (0, 2, 3)) == ["delivered", "sent", "sent"]
    final = await store.get_message(msg.id)
    assert final is not None and final.status == "delivered"
    assert sorted(final.meta["parts_delivered"]) == ["p1", "p2", "p3"]
    solo = await store.get_message(other.id)
    assert solo is not None and solo.status == "delivered"


async def test_a_report_that_fails_fails_alone(store: Store, clock: FrozenClock) -> None:
    """A report whose message cannot be read raises for its caller only; the reports that
    arrive with it are applied."""
    _m, [good, bad] = await queued(store, clock, 2)
    for msg, cid in ((good, "ok-1"), (bad, "bad-1")):
        await store.update_message(msg.id, StatusUpdate(status="sent", carrier_id=cid), clock.now())
    if isinstance(store, SqliteStore):  # the document is damaged behind the store's back
        store._conn.execute("UPDATE messages SET doc = '{' WHERE id = ?", (bad.id,))
    else:
        assert isinstance(store, RedisStore)
        await store._r.set(store._k("msg", bad.id), "{")
    delivered = StatusUpdate(status="delivered")
    results = await asyncio.gather(
        store.update_by_carrier_id("c1", "bad-1", delivered, clock.now()),
        store.update_by_carrier_id("c1", "ok-1", delivered, clock.now()),
        return_exceptions=True,
    )
    assert isinstance(results[0], ValueError)
    assert not isinstance(results[1], BaseException) and results[1] is not None
    after = await store.get_message(good.id)
    assert after is not None and after.status == "delivered"
