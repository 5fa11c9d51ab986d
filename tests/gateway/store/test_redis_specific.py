"""Redis-only checks: key namespacing and races between separate connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.clock import FrozenClock
from gateway.models import Event, Job, to_ms
from gateway.store import make_store
from gateway.store.base import StatusUpdate, Store
from gateway.store.redis import RedisStore
from tests.gateway.store import test_contract as contract
from tests.gateway.store import test_contract_jobs as contract_jobs

pytestmark = pytest.mark.anyio


def _url(redis_url: str, prefix: str) -> str:
    return f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[list[Store]]:
    """Four stores on one fresh prefix: four connection pools, as four processes would."""
    url = _url(redis_url, f"t{uuid.uuid4().hex[:12]}")
    opened = [make_store(url) for _ in range(4)]
    for s in opened:
        await s.open()
    try:
        yield opened
    finally:
        for s in opened:
            await s.aclose()


async def test_prefix_namespaces_every_key(redis_url: str, clock: FrozenClock) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    url = _url(redis_url, prefix)
    store = make_store(url)
    assert isinstance(store, RedisStore) and store.url == url and store.prefix == prefix
    raw = aioredis.from_url(redis_url, decode_responses=True)
    await store.open()
    try:
        before = await raw.dbsize()
        t, m, conv = await contract.setup(store, clock, limit=10**9)
        msg = contract.message(clock, m, conv)
        await store.submit_outbound(msg, contract.charge(t, m), contract.job(clock), [])
        await store.update_message(msg.id, StatusUpdate(status="sent", carrier_id="x"), clock.now())
        await store.idem_claim(t.id, "k", "fp", clock.now(), timedelta(seconds=5))
        ours = [k async for k in raw.scan_iter(match=f"{prefix}:*")]
        # Every key the store wrote carries the prefix (nothing else writes meanwhile).
        assert ours and await raw.dbsize() - before == len(ours)
        other = make_store(_url(redis_url, f"t{uuid.uuid4().hex[:12]}"))
        await other.open()
        try:
            assert await other.get_team(t.id) is None
            assert await other.list_events(0, 10) == []
            assert await other.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
        finally:
            await other.aclose()
    finally:
        await store.aclose()
        await raw.aclose()


async def test_racing_releases_give_units_back_once(
    stores: list[Store], clock: FrozenClock
) -> None:
    t, m, conv = await contract.setup(stores[0], clock, limit=10**9)
    msg = contract.message(clock, m, conv, units=12)
    await stores[0].submit_outbound(msg, contract.charge(t, m, 12), contract.job(clock), [])
    upd = StatusUpdate(status="failed", release=True)
    results = await asyncio.gather(
        *(stores[i % 4].update_message(msg.id, upd, clock.now()) for i in range(12))
    )
    assert sum(1 for r in results if r is not None and r[1]) == 1
    lines, overage = await stores[1].ledger(t.id, "2026-03")
    assert lines[0].used == 0 and overage == 0
    history = [h.status for h in await stores[2].status_history(msg.id)]
    assert history == ["accepted", "failed"]


async def test_racing_inbound_duplicates_store_one(stores: list[Store], clock: FrozenClock) -> None:
    _, m, conv = await contract.setup(stores[0], clock)
    msgs = [
        contract.message(clock, m, conv, direction="inbound", status="received") for _ in range(8)
    ]
    results = await asyncio.gather(
        *(stores[i % 4].store_inbound(x, "c1:dup", []) for i, x in enumerate(msgs))
    )
    assert sum(1 for _, created in results if created) == 1
    assert len({stored.id for stored, _ in results}) == 1


async def test_threshold_event_reports_usage(stores: list[Store], clock: FrozenClock) -> None:
    t, m, conv = await contract.setup(stores[0], clock, limit=10**9)
    msg = contract.message(clock, m, conv, units=8)
    evs = await stores[0].submit_outbound(msg, contract.charge(t, m, 8), contract.job(clock), [])
    expected = {
        "member_id": m.id,
        "channel": "sms",
        "period": "2026-03",
        "threshold": 80,
        "included": 10,
        "used": 8,
    }
    assert [e.data for e in evs] == [expected]
    stored = await stores[1].list_events(0, 10)
    assert [(e.id, e.seq, e.data) for e in stored] == [(evs[0].id, evs[0].seq, expected)]


async def test_pipelined_sends_survive_a_script_flush(
    stores: list[Store], clock: FrozenClock
) -> None:
    # Sends of one tick go out as one pipeline of EVALSHA; after a restart (or SCRIPT
    # FLUSH) Redis has forgotten the scripts and the pipeline must load them again.
    store = stores[0]
    t, m, conv = await contract.setup(store, clock, limit=10**9)
    assert isinstance(store, RedisStore)
    await store._r.script_flush()
    sends = [
        store.submit_outbound(
            contract.message(clock, m, conv), contract.charge(t, m), contract.job(clock), []
        )
        for _ in range(20)
    ]
    await asyncio.gather(*sends)
    lines, _ = await store.ledger(t.id, "2026-03")
    assert lines[0].used == 20
    assert (await store.job_counts())["ready"] == 20


def test_threshold_template_is_the_encoded_event() -> None:
    # The Redis store writes threshold events from a string template (hot path); it must
    # be exactly what encoding rules.threshold_event gives, with the usage spliced in.
    from datetime import UTC, datetime

    from gateway import jsoncodec
    from gateway.models import Charge
    from gateway.store import rules
    from gateway.store.redis import _threshold_parts

    at = datetime(2026, 3, 31, 21, 59, 59, 123000, tzinfo=UTC)
    charge = Charge("team_1", "mem_1", "whatsapp", "2026-03", 3, 1000, 20_000, 10**6)
    event = rules.threshold_event(charge, 80, 801, at)
    head, tail = _threshold_parts(charge, 80, event.id, at)
    doc = event.to_dict()
    doc.pop("seq")
    assert head + "801" + tail == jsoncodec.dumps(doc)


def test_packed_commands_count_bytes_not_characters() -> None:
    # RESP lengths are byte counts: a document with non-ASCII text must say so.
    from gateway.store.redis_lane import pack as _pack

    assert _pack(["SET", "k", "Grüße €", 7]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$11\r\n" + "Grüße €".encode() + b"\r\n$1\r\n7\r\n"
    )


async def test_a_failing_script_fails_only_its_own_call(stores: list[Store]) -> None:
    # One pipeline carries the calls of a tick; an error reply belongs to its call alone.
    store = stores[0]
    assert isinstance(store, RedisStore)
    base = f"{store.prefix}:pipetest"
    await store._r.set(f"{base}:bad", "not a number")
    calls = [
        store._run_batched("append_events", [f"{base}:seq", f"{base}:log"], ["{}"]),
        # INCR of a key that holds text: the script raises inside Redis.
        store._run_batched("append_events", [f"{base}:bad", f"{base}:log"], ["{}"]),
        store._run_batched("append_events", [f"{base}:seq", f"{base}:log"], ["{}", "{}"]),
    ]
    first, failed, last = await asyncio.gather(*calls, return_exceptions=True)
    assert first == [1]
    assert isinstance(failed, aioredis.ResponseError)
    assert last == [2, 3]


async def test_sends_take_a_new_connection_after_a_hang_up(
    stores: list[Store], clock: FrozenClock
) -> None:
    # The lane keeps one connection for sends; when the server closes it (restart,
    # timeout, CLIENT KILL) while idle, the next batch goes out on a new one.
    store = stores[0]
    assert isinstance(store, RedisStore)
    t, m, conv = await contract.setup(store, clock, limit=10**9)

    def send() -> Awaitable[list[Event]]:
        msg = contract.message(clock, m, conv)
        return store.submit_outbound(msg, contract.charge(t, m), contract.job(clock), [])

    await send()
    conn = store.backend.lane._conn
    await conn.send_command("CLIENT", "ID")
    client_id = await conn.read_response()
    await store._r.client_kill_filter(_id=client_id)
    for _ in range(500):  # until the loop has seen the hang-up (bounded)
        if conn._reader.at_eof():
            break
        await asyncio.sleep(0.01)
    assert conn._reader.at_eof()
    await asyncio.gather(*(send() for _ in range(5)))
    await conn.send_command("CLIENT", "ID")
    assert await conn.read_response() != client_id  # the pool connected it anew
    lines, _ = await store.ledger(t.id, "2026-03")
    assert lines[0].used == 6


async def test_a_connection_lost_in_flight_fails_its_calls_and_the_next_batch_works(
    stores: list[Store], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replies lost with the connection: the calls fail (their outcome is unknown to the
    # caller, as with any lost reply) instead of waiting forever; later sends go on.
    store = stores[0]
    assert isinstance(store, RedisStore)
    lane = store.backend.lane
    t, m, conv = await contract.setup(store, clock, limit=10**9)

    def send() -> Awaitable[list[Event]]:
        msg = contract.message(clock, m, conv)
        return store.submit_outbound(msg, contract.charge(t, m), contract.job(clock), [])

    await send()
    real_send = lane._send

    def send_then_cut(batch: list[Any]) -> None:
        real_send(batch)
        lane._conn._writer.transport.abort()  # gone before any reply is read

    monkeypatch.setattr(lane, "_send", send_then_cut)
    lost = await asyncio.gather(*(send() for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in lost), lost
    monkeypatch.setattr(lane, "_send", real_send)
    await asyncio.gather(*(send() for _ in range(2)))
    assert 3 <= (await store.job_counts())["ready"] <= 6  # the lost ones may have run


def _due_jobs(clock: FrozenClock, n: int) -> list[Job]:
    return [contract_jobs.job(clock, "send") for _ in range(n)]


async def test_racing_leasers_take_different_jobs_without_losing_a_write(
    stores: list[Store], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four processes lease at once: each is handed jobs of its own (the claim), so not
    one compare-and-set of a lease is refused for a job another leaser took first."""
    for j in _due_jobs(clock, 40):
        await stores[0].enqueue(j)
    refused: list[str] = []
    save = RedisStore._save_job

    async def counted(self: RedisStore, raw: str, job: Job | None, job_id: str, kind: str,
                      batched: bool = False) -> bool:
        saved = await save(self, raw, job, job_id, kind, batched)
        if not saved:
            refused.append(job_id)
        return saved

    monkeypatch.setattr(RedisStore, "_save_job", counted)
    vis = timedelta(seconds=30)
    got = await asyncio.gather(
        *(s.lease_jobs(clock.now(), f"w{i}", vis, 10, kinds={"send"}) for i, s in enumerate(stores))
    )
    assert [len(g) for g in got] == [10, 10, 10, 10]
    assert len({j.id for g in got for j in g}) == 40
    assert refused == []
    assert await stores[1].job_counts() == {"ready": 0, "leased": 40, "dead": 0}


async def test_jobs_claimed_by_a_leaser_that_died_are_due_again_when_its_lease_would_end(
    stores: list[Store], clock: FrozenClock
) -> None:
    jobs = _due_jobs(clock, 3)
    for j in jobs:
        await stores[0].enqueue(j)
    vis = timedelta(seconds=30)
    dying = stores[0]
    assert isinstance(dying, RedisStore)
    now_ms = to_ms(clock.now())
    more, claimed = await dying._claim(now_ms, 5, to_ms(clock.now() + vis), {"send"})
    assert [job_id for job_id, _ in claimed] == [j.id for j in jobs] and not more
    # ... and dies before writing the leases: nobody else is handed them meanwhile,
    assert await stores[1].lease_jobs(clock.now(), "w", vis, 5, kinds={"send"}) == []
    clock.advance(seconds=31)
    # then they are due as they were: ready, no attempt used.
    got = await stores[1].lease_jobs(clock.now(), "w", vis, 5, kinds={"send"})
    assert sorted(j.id for j in got) == sorted(j.id for j in jobs)
    assert {(j.state, j.attempts) for j in got} == {("leased", 1)}


def _count_claims(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of jobs each ``claim_jobs`` call took, in order."""
    taken: list[int] = []
    claim = RedisStore._claim

    async def counted(self: RedisStore, *args: Any) -> tuple[bool, list[tuple[str, str]]]:
        more, pairs = await claim(self, *args)
        taken.append(len(pairs))
        return more, pairs

    monkeypatch.setattr(RedisStore, "_claim", counted)
    return taken


async def test_a_lease_of_fewer_due_jobs_than_free_slots_claims_once(
    stores: list[Store], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim says whether more were due than it took: an idle worker's lease of the
    one job just enqueued is one claim (then the write), not a second, empty claim."""
    for j in _due_jobs(clock, 3):
        await stores[0].enqueue(j)
    taken = _count_claims(monkeypatch)
    vis = timedelta(seconds=30)
    got = await stores[1].lease_jobs(clock.now(), "w", vis, 64, kinds={"send"})
    assert len(got) == 3 and taken == [3]
    assert await stores[1].lease_jobs(clock.now(), "w", vis, 64, kinds={"send"}) == []
    assert taken == [3, 0]
    # Exactly as many due as asked for: one claim, and nothing left behind.
    for j in _due_jobs(clock, 4):
        await stores[0].enqueue(j)
    assert len(await stores[1].lease_jobs(clock.now(), "w", vis, 4, kinds={"send"})) == 4
    assert taken == [3, 0, 4]
    assert await stores[1].job_counts() == {"ready": 0, "leased": 7, "dead": 0}


async def test_a_claim_that_parked_jobs_of_other_kinds_claims_again_while_more_are_due(
    stores: list[Store], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs of kinds the worker does not run take room in a claim (they are parked);
    while more are due, the leaser claims again until its slots are full."""
    media = [contract_jobs.job(clock, "whatsapp_media", -10 + i) for i in range(4)]
    sends = [contract_jobs.job(clock, "send", -5 + i) for i in range(6)]
    for j in (*media, *sends):
        await stores[0].enqueue(j)
    taken = _count_claims(monkeypatch)
    vis = timedelta(seconds=30)
    got = await stores[1].lease_jobs(clock.now(), "w", vis, 5, kinds={"send"})
    # The 4 media jobs came first (earliest): parked, and a second claim filled the slots.
    assert [j.id for j in got] == [j.id for j in sends[:5]]
    assert taken == [5, 4]
    rest = await stores[1].lease_jobs(clock.now(), "w", vis, 5, kinds={"send"})
    assert [j.id for j in rest] == [sends[5].id] and taken == [5, 4, 1]


async def test_the_message_of_a_leased_send_is_read_in_the_leases_round_trip(
    stores: list[Store], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease reads the messages its jobs name (behind the compare-and-sets, in the
    same round trip), so the send handler's first look at its message costs no read."""
    api, worker = stores[0], stores[1]
    assert isinstance(worker, RedisStore)
    t, m, conv = await contract.setup(api, clock, limit=10**9)
    sends = []
    for _ in range(3):
        msg = contract.message(clock, m, conv)
        sends.append(contract.job(clock, message_id=msg.id))
        await api.submit_outbound(msg, contract.charge(t, m), sends[-1], [])
    await worker.get_message("msg_none")  # the lane is connected: each batch is sent once
    batches: list[list[str]] = []
    lane = worker.backend.lane
    real_send = lane._send

    def counted(batch: list[Any]) -> None:
        batches.append([call[0] for call in batch])
        real_send(batch)

    monkeypatch.setattr(lane, "_send", counted)
    got = await worker.lease_jobs(clock.now(), "w", timedelta(seconds=30), 10)
    assert batches == [["claim_jobs"], ["save_job"] * 3 + ["read_mget"]]
    for leased in got:
        found = await worker.message_of_job(leased)
        assert found is not None and found.id == leased.payload["message_id"]
    assert len(batches) == 2  # no read of their own
    # The doc read with the lease is the one the update tries first: one script, no read.
    await worker.update_message(str(got[0].payload["message_id"]),
                                StatusUpdate(status="sending"), clock.now())  # fmt: skip
    assert batches[2:] == [["update_message"]]
