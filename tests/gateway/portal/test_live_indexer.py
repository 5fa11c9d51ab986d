"""One process indexes the portal's inbox: of several live tails on one Redis store, one
holds the indexer slot and indexes; the others index nothing, hand out to their streams
only what that one indexed, and take over when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import InboundMessage
from gateway.clock import FrozenClock
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Message
from gateway.portal import indexer, live
from gateway.portal.live import Hub
from gateway.portal.web import portal_for
from gateway.runtime import Runtime
from tests.conftest import until
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, runtime_on, seed_directory

pytestmark = pytest.mark.anyio
TIMEOUT = 15.0


async def arrive(rt: Runtime, text: str) -> Message:
    """An inbound SMS for anna's number, stored by ``rt``'s process."""
    message = InboundMessage("fake1", "sms", f"c-{new_id('x')}", CONTACT, MOBILE_A, text,
                             rt.clock.now())  # fmt: skip
    stored = await Inbound(rt).inbound(message)
    assert stored is not None
    return stored


@contextlib.asynccontextmanager
async def processes(
    redis_url: str, tmp_path: Path, clock: FrozenClock, count: int
) -> AsyncIterator[tuple[list[Runtime], list[Hub], Seed]]:
    """``count`` runtimes on one new Redis prefix (as many processes), their tails running."""
    sep = "&" if "?" in redis_url else "?"
    url = f"{redis_url}{sep}prefix=t{uuid.uuid4().hex[:12]}"
    async with contextlib.AsyncExitStack() as stack:
        rts = [
            await stack.enter_async_context(runtime_on(url, tmp_path / f"p{i}", clock))
            for i in range(count)
        ]
        seed = await seed_directory(rts[0], clock)
        hubs = [(await portal_for(rt)).hub for rt in rts]
        for hub in hubs:
            hub.start()
            stack.push_async_callback(hub.stop)
        yield rts, hubs, seed


async def test_one_tail_indexes_the_others_follow_and_take_over(
    redis_url: str, tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed_by: list[object] = []
    real_step = indexer.index_step

    async def counting_step(store: Any, portal: Any, batch: int = indexer.BATCH) -> int:
        read = await real_step(store, portal, batch)
        if read:
            indexed_by.append(portal)
        return read

    monkeypatch.setattr(indexer, "index_step", counting_step)
    async with processes(redis_url, tmp_path, clock, 3) as (rts, hubs, seed):
        await until(lambda: sum(h.indexing for h in hubs) == 1, "one tail indexes", TIMEOUT)
        leader = next(h for h in hubs if h.indexing)
        follower = next(h for h in hubs if not h.indexing)
        sub = follower.subscribe(seed.anna.id)
        # The message arrives through a process that does not index.
        first = await arrive(rts[hubs.index(follower)], "one index for all")
        frame = await asyncio.wait_for(sub.queue.get(), TIMEOUT)
        assert frame is not None and first.id.encode() in frame.data
        # Handed out only once indexed: the index already has it.
        assert await follower.portal.index_cursor() >= frame.seq
        assert indexed_by and all(p is leader.portal for p in indexed_by)
        assert sum(h.indexing for h in hubs) == 1
        # The indexing process stops: another tail takes the slot and indexes on.
        await leader.stop()
        await until(lambda: any(h.indexing for h in hubs if h is not leader),
                    "another tail took the slot", live.INDEX_LEASE)  # fmt: skip
        successor = next(h for h in hubs if h.indexing)
        second = await arrive(rts[0], "after the take-over")
        frame = await asyncio.wait_for(sub.queue.get(), TIMEOUT)
        assert frame is not None and second.id.encode() in frame.data
        assert indexed_by[-1] is successor.portal
        follower.unsubscribe(sub)


async def test_a_tail_without_streams_reads_no_events(
    redis_url: str, tmp_path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: dict[int, int] = {}
    async with processes(redis_url, tmp_path, clock, 2) as (rts, hubs, seed):
        await until(lambda: sum(h.indexing for h in hubs) == 1, "one tail indexes", TIMEOUT)
        resting = next(h for h in hubs if not h.indexing)
        real = resting.store.list_events

        async def counted(after: int, limit: int) -> Any:
            reads[after] = reads.get(after, 0) + 1
            return await real(after, limit)

        monkeypatch.setattr(resting.store, "list_events", counted)
        for n in range(5):
            await arrive(rts[0], f"message {n}")
        leader = next(h for h in hubs if h.indexing)
        last = (await rts[0].store.list_events(0, 1000))[-1].seq
        await until(lambda: _at(leader, last), "the five messages indexed", TIMEOUT)
        await asyncio.sleep(0.3)
        assert reads == {}  # the resting tail read nothing of the log
        # A stream opens there: the tail wakes at once and follows the index, from where
        # it last looked (so a page rendered before resumes without a gap).
        sub = resting.subscribe(seed.anna.id)
        third = await arrive(rts[1], "now someone listens")
        seqs = []
        while True:
            frame = await asyncio.wait_for(sub.queue.get(), TIMEOUT)
            assert frame is not None
            seqs.append(frame.seq)
            if third.id.encode() in frame.data:
                break
        assert seqs == sorted(set(seqs))  # in order, each once
        assert reads  # now it reads
        resting.unsubscribe(sub)


async def _at(hub: Hub, seq: int) -> bool:
    return await hub.portal.index_cursor() >= seq
