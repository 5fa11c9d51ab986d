"""The Store contract of the job queue's seams, on both backends: a worker leases only the
kinds it handles (the others are parked, untouched, and found by a worker that handles
them), a lease is renewed by its holder only, and an operator lists jobs and revives dead
ones."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.ids import new_id
from gateway.models import Job
from gateway.store import make_store
from gateway.store.base import StatusUpdate, Store
from tests.gateway.store import test_contract as contract
from tests.gateway.store.test_contract_batch import queued

pytestmark = pytest.mark.anyio
VIS = timedelta(seconds=30)


def job(clock: FrozenClock, kind: str, seconds: float = 0, attempts: int = 3) -> Job:
    at = clock.now() + timedelta(seconds=seconds)
    return Job(new_id("job"), kind, {"kind": kind}, at, attempts, created_at=clock.now())


async def test_a_worker_leases_only_its_kinds_and_parks_the_others_untouched(
    store: Store, clock: FrozenClock
) -> None:
    media = job(clock, "whatsapp_media", 1)
    sends = [job(clock, "send", 2), job(clock, "send", 3)]
    for j in (media, *sends):
        await store.enqueue(j)
    clock.advance(seconds=10)
    got = await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"send", "forward"})
    assert [j.id for j in got] == [j.id for j in sends]  # the media job did not stand in front
    parked = await store.get_job(media.id)
    assert parked == media  # its doc as it was: ready, no attempt used, no lease
    assert await store.parked_job_counts() == {"whatsapp_media": 1}
    assert await store.job_counts() == {"ready": 1, "leased": 2, "dead": 0}
    # A worker without the kind finds nothing more, and never writes for it again.
    assert await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"send"}) == []
    assert await store.lease_job(clock.now(), "w", VIS, kinds=set()) is None
    # A worker that handles it leases it from the parked ones, as any due job.
    [taken] = await store.lease_jobs(clock.now(), "w2", VIS, 5, kinds={"whatsapp_media"})
    assert (taken.id, taken.attempts, taken.state) == (media.id, 1, "leased")
    assert await store.parked_job_counts() == {}
    assert await store.ack_job(taken.id, taken.token or "")
    assert await store.job_counts() == {"ready": 0, "leased": 2, "dead": 0}


async def test_parked_jobs_keep_their_order_and_are_leased_with_the_ready_ones(
    store: Store, clock: FrozenClock
) -> None:
    early = [job(clock, "fax", s) for s in (1, 2)]
    later = job(clock, "send", 5)
    for j in (*early, later):
        await store.enqueue(j)
    clock.advance(seconds=10)
    assert await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"mail"}) == []  # parks all
    assert await store.parked_job_counts() == {"fax": 2, "send": 1}
    got = await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"fax", "send"})
    assert [j.id for j in got] == [j.id for j in (*early, later)]  # earliest due first
    # ``kinds=None`` (every kind) leases parked jobs too.
    other = job(clock, "fax")
    await store.enqueue(other)
    assert await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"send"}) == []
    assert [j.id for j in await store.lease_jobs(clock.now(), "w", VIS, 5)] == [other.id]


async def test_an_expired_lease_of_an_unhandled_kind_is_parked_and_taken_over(
    store: Store, clock: FrozenClock
) -> None:
    media = job(clock, "whatsapp_media")
    await store.enqueue(media)
    [held] = await store.lease_jobs(clock.now(), "dead-worker", VIS, 1, kinds={"whatsapp_media"})
    clock.advance(seconds=60)  # the holder died: its lease ran out
    assert await store.lease_jobs(clock.now(), "w", VIS, 1, kinds={"send"}) == []
    assert await store.parked_job_counts() == {"whatsapp_media": 1}
    # Its first holder was only slow: it still holds the lease and may finish the job.
    assert await store.renew_job(media.id, held.token or "", clock.now() + VIS)
    assert await store.parked_job_counts() == {}
    clock.advance(seconds=60)
    assert await store.lease_jobs(clock.now(), "w", VIS, 1, kinds={"send"}) == []
    [again] = await store.lease_jobs(clock.now(), "w2", VIS, 1, kinds={"whatsapp_media"})
    assert (again.id, again.attempts) == (media.id, 2)
    assert not await store.ack_job(media.id, held.token or "")  # the lease moved on


async def test_a_parked_expired_send_is_completed_by_its_holder(
    store: Store, clock: FrozenClock
) -> None:
    """``complete_send`` acks a job whose expired lease was parked by another process."""
    from gateway.store.base import StatusUpdate

    _m, [msg] = await queued(store, clock)
    [held] = await store.lease_jobs(clock.now(), "slow", VIS, 1, kinds={"send"})
    clock.advance(seconds=60)
    assert await store.lease_jobs(clock.now(), "api", VIS, 1, kinds={"forward"}) == []
    assert await store.parked_job_counts() == {"send": 1}
    update = StatusUpdate(status="sent", carrier_id="c-1")
    await store.complete_send(msg.id, update, held.id, held.token or "", clock.now())
    assert await store.get_job(held.id) is None
    assert await store.parked_job_counts() == {}
    assert await store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
    assert await store.lease_jobs(clock.now(), "w", VIS, 1, kinds={"send"}) == []


async def test_renew_extends_the_lease_of_its_holder_only(store: Store, clock: FrozenClock) -> None:
    await store.enqueue(job(clock, "fax"))
    [held] = await store.lease_jobs(clock.now(), "w1", VIS, 1, kinds={"fax"})
    for _ in range(10):  # ten times the visibility timeout, renewed every third of it
        clock.advance(seconds=10)
        assert await store.renew_job(held.id, held.token or "", clock.now() + VIS)
        assert await store.lease_jobs(clock.now(), "w2", VIS, 1, kinds={"fax"}) == []
    renewed = await store.get_job(held.id)
    assert renewed is not None and renewed.lease_until == clock.now() + VIS
    assert renewed.attempts == 1
    assert not await store.renew_job(held.id, "someone-else", clock.now() + VIS)
    clock.advance(seconds=31)  # the holder stopped renewing: another worker takes over
    [taken] = await store.lease_jobs(clock.now(), "w2", VIS, 1, kinds={"fax"})
    assert taken.attempts == 2
    assert not await store.renew_job(held.id, held.token or "", clock.now() + VIS)
    assert await store.ack_job(taken.id, taken.token or "")
    assert not await store.renew_job(held.id, taken.token or "", clock.now() + VIS)  # gone


async def test_list_jobs_by_state_and_kind(store: Store, clock: FrozenClock) -> None:
    a, b, c = job(clock, "send", 3), job(clock, "whatsapp_media", 1), job(clock, "send", 2)
    doomed = job(clock, "forward", attempts=1)
    for j in (a, b, c, doomed):
        await store.enqueue(j)
    [leased] = await store.lease_jobs(clock.now(), "w", VIS, 1, kinds={"forward"})
    assert await store.retry_job(leased.id, leased.token or "", clock.now(), "boom") == "dead"
    clock.advance(seconds=5)
    await store.lease_jobs(clock.now(), "w", VIS, 0, kinds={"send"})
    await store.lease_jobs(clock.now(), "other", VIS, 1, kinds={"mail"})  # parks everything
    ready = await store.list_jobs("ready", None, 10)
    assert [j.id for j in ready] == [b.id, c.id, a.id]  # parked or not: by due time
    assert [j.id for j in await store.list_jobs("ready", "send", 10)] == [c.id, a.id]
    assert [j.id for j in await store.list_jobs("ready", None, 2)] == [b.id, c.id]
    assert [j.id for j in await store.list_jobs("ready", "fax", 10)] == []
    [dead] = await store.list_jobs("dead", None, 10)
    assert (dead.id, dead.last_error) == (doomed.id, "boom")
    assert await store.list_jobs("dead", "send", 10) == []
    assert await store.list_jobs("leased", None, 10) == []


async def test_revive_gives_a_dead_job_a_new_life(store: Store, clock: FrozenClock) -> None:
    doomed = job(clock, "whatsapp_media", attempts=1)
    alive = job(clock, "send")
    await store.enqueue(doomed)
    await store.enqueue(alive)
    [leased] = await store.lease_jobs(clock.now(), "w", VIS, 1, kinds={"whatsapp_media"})
    await store.retry_job(leased.id, leased.token or "", clock.now(), "no handler")
    assert await store.revive_job(alive.id, clock.now()) is None  # not dead
    assert await store.revive_job("job_nope", clock.now()) is None
    clock.advance(minutes=5)
    revived = await store.revive_job(doomed.id, clock.now())
    assert revived is not None
    assert (revived.state, revived.attempts, revived.run_at) == ("ready", 0, clock.now())
    assert revived.last_error == "no handler"
    assert await store.list_dead_jobs(10) == []
    assert await store.job_counts() == {"ready": 2, "leased": 0, "dead": 0}
    got = await store.lease_jobs(clock.now(), "w", VIS, 5, kinds={"whatsapp_media"})
    assert [(j.id, j.attempts) for j in got] == [(doomed.id, 1)]


async def test_parking_survives_another_process(url: str, clock: FrozenClock) -> None:
    """Parked jobs are in the store, not in the process that parked them."""
    first, second = make_store(url), make_store(url)
    await first.open()
    await second.open()
    try:
        media = job(clock, "whatsapp_media")
        await first.enqueue(media)
        assert await first.lease_jobs(clock.now(), "api", VIS, 1, kinds={"send"}) == []
        assert await second.parked_job_counts() == {"whatsapp_media": 1}
        [got] = await second.lease_jobs(clock.now(), "w", VIS, 1, kinds={"whatsapp_media"})
        assert got.id == media.id
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_message_of_a_leased_job_is_the_message_as_stored(
    store: Store, clock: FrozenClock
) -> None:
    """``message_of_job``: the message a just-leased job names, as stored (Redis reads it
    with the lease); asked again, it is read again and shows a later change."""
    t, m, conv = await contract.setup(store, clock, limit=10**9)
    msg = contract.message(clock, m, conv)
    send = contract.job(clock, message_id=msg.id)
    await store.submit_outbound(msg, contract.charge(t, m), send, [])
    other = job(clock, "forward")  # names no message
    await store.enqueue(other)
    got = await store.lease_jobs(clock.now(), "w", VIS, 5)
    assert {j.id for j in got} == {send.id, other.id}
    [leased] = [j for j in got if j.id == send.id]
    first = await store.message_of_job(leased)
    assert first is not None and (first.id, first.status) == (msg.id, msg.status)
    await store.update_message(msg.id, StatusUpdate(status="sending"), clock.now())
    again = await store.message_of_job(leased)
    assert again is not None and again.status == "sending"
    assert await store.message_of_job(other) is None
