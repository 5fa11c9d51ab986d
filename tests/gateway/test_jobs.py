"""The job worker on both backends: one leaser that takes due jobs in batches, runs at
most ``concurrency`` at once, is woken by new jobs and freed slots (never by polling in
these tests: the poll interval is set far beyond them), and finishes jobs in flight."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import jobs
from gateway.clock import FrozenClock
from gateway.ids import new_id
from gateway.models import Job
from gateway.process import worker
from gateway.runtime import Runtime

pytestmark = pytest.mark.anyio
KIND = "test.block"
TIMEOUT = 10.0  # seconds a test waits for something that must happen


class Probe:
    """A job kind whose runs wait for ``release``; it counts runs and concurrency."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0
        self.ran: list[str] = []
        self.result: bool | None = None

    async def __call__(self, job: Job) -> bool | None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.ran.append(job.id)
        if self.result:
            await self.rt.store.ack_job(job.id, job.token or "")
        return self.result


@pytest.fixture
def probe(rt: Runtime) -> Probe:
    return Probe(rt)


@pytest.fixture
def quiet(rt: Runtime) -> Runtime:
    """The runtime with a poll interval no test waits for: only wakes move the worker."""
    rt.settings = dataclasses.replace(rt.settings, poll_interval=60.0)
    return rt


def count_calls(
    monkeypatch: pytest.MonkeyPatch, obj: object, name: str
) -> list[tuple[tuple[Any, ...], Any]]:
    """Record every call of the async method ``obj.name``: (arguments, result)."""
    calls: list[tuple[tuple[Any, ...], Any]] = []
    original: Callable[..., Awaitable[Any]] = getattr(obj, name)

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        calls.append((args, result))
        return result

    monkeypatch.setattr(obj, name, wrapper)
    return calls


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` holds (failing after ``TIMEOUT``)."""
    async with asyncio.timeout(TIMEOUT):
        while not check():  # noqa: ASYNC110 (state of other tasks: no event to wait on)
            await asyncio.sleep(0.005)


async def enqueue(rt: Runtime, at: datetime, n: int) -> list[str]:
    """``n`` jobs enqueued together (as the sends of one moment), then one wake."""
    jobs = [Job(new_id("job"), KIND, {}, at, 3, created_at=at) for _ in range(n)]
    await asyncio.gather(*(rt.store.enqueue(job) for job in jobs))
    rt.wake_workers()
    return [job.id for job in jobs]


async def test_a_burst_runs_in_batches_within_the_slots(
    quiet: Runtime, probe: Probe, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = quiet
    leases = count_calls(monkeypatch, rt.store, "lease_jobs")
    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt, extra={KIND: probe}, concurrency=3).run(stop))
    await until(lambda: len(leases) == 1)  # it looked (nothing was due) and sleeps
    ids = await enqueue(rt, clock.now(), 8)
    await until(lambda: probe.running == 3)
    # One wake, one write for all three free slots; the others wait for a slot.
    taken = [len(result) for _, result in leases if result]
    assert taken == [3]
    assert (await rt.store.job_counts())["ready"] == 5
    probe.release.set()  # every run finishes now: each freed slot wakes the leaser
    await until(lambda: len(probe.ran) == 8)
    assert probe.most == 3 and sorted(probe.ran) == sorted(ids)
    assert all(args[3] <= 3 for args, _ in leases)  # never more than the free slots
    stop.set()
    await asyncio.wait_for(task, TIMEOUT)
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_an_idle_worker_waits_for_a_wake(
    quiet: Runtime, probe: Probe, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = quiet
    leases = count_calls(monkeypatch, rt.store, "lease_jobs")
    probe.release.set()
    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt, extra={KIND: probe}, concurrency=4).run(stop))
    await until(lambda: len(leases) >= 1)
    for _ in range(20):
        await asyncio.sleep(0.005)
    assert len(leases) == 1  # it looked once and sleeps: no polling, no spinning
    [job_id] = await enqueue(rt, clock.now(), 1)
    await until(lambda: probe.ran == [job_id])
    stop.set()
    await asyncio.wait_for(task, TIMEOUT)
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_stop_lets_the_jobs_in_flight_finish(
    quiet: Runtime, probe: Probe, clock: FrozenClock
) -> None:
    rt = quiet
    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt, extra={KIND: probe}, concurrency=2).run(stop))
    ids = await enqueue(rt, clock.now(), 3)
    await until(lambda: probe.running == 2)
    stop.set()
    for _ in range(10):
        await asyncio.sleep(0.005)
    assert not task.done()  # waiting for its two jobs
    probe.release.set()
    await asyncio.wait_for(task, TIMEOUT)
    assert len(probe.ran) == 2
    counts = await rt.store.job_counts()
    assert counts == {"ready": 1, "leased": 0, "dead": 0}  # the third was never leased
    assert set(probe.ran) < set(ids)


async def test_a_handler_that_finished_its_job_is_not_acked_again(
    rt: Runtime, probe: Probe, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe.release.set()
    acks = count_calls(monkeypatch, rt.store, "ack_job")
    await enqueue(rt, clock.now(), 1)
    probe.result = True  # it acks itself (as complete_send does) and says so
    assert await worker(rt, extra={KIND: probe}).run_once()
    assert [result for _, result in acks] == [True]
    await enqueue(rt, clock.now(), 1)
    probe.result = None  # the worker acks
    assert await worker(rt, extra={KIND: probe}).run_once()
    assert [result for _, result in acks] == [True, True]
    assert not await worker(rt, extra={KIND: probe}).run_once()


async def test_a_due_retry_is_found_by_the_poll(
    rt: Runtime, probe: Probe, clock: FrozenClock
) -> None:
    """Jobs nobody wakes the worker for (another process's, retries falling due) are
    found by the poll interval (the fixture's short one)."""
    probe.release.set()
    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt, extra={KIND: probe}, concurrency=2).run(stop))
    job = Job(new_id("job"), KIND, {}, clock.now() + timedelta(seconds=5), 3)
    await rt.store.enqueue(job)  # no wake
    clock.advance(seconds=6)
    await until(lambda: probe.ran == [job.id])
    stop.set()
    await asyncio.wait_for(task, TIMEOUT)


async def test_a_store_that_is_down_is_tried_with_a_backoff_and_one_traceback(
    rt: Runtime,
    probe: Probe,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While leasing fails (the store is down) the leaser waits longer after each failure
    in a row, to a cap, instead of trying every poll interval with a traceback each time;
    once the store is back it leases at once and runs what is due."""
    rt.settings = dataclasses.replace(rt.settings, poll_interval=0.01)
    waits: list[float] = []

    class Recorded(jobs.Failing):
        """Without jitter and with a short cap (the test takes a fraction of a second)."""

        def __init__(self, what: str, first: float, log: logging.Logger) -> None:
            super().__init__(what, first, log, cap=0.05, rand=lambda: 0.0)

        def failed(self, exc: BaseException) -> float:
            waits.append(super().failed(exc))
            return waits[-1]

    monkeypatch.setattr(jobs, "Failing", Recorded)
    real, calls = rt.store.lease_jobs, 0

    async def down_at_first(*args: Any, **kwargs: Any) -> list[Job]:
        nonlocal calls
        calls += 1
        if calls <= 7:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
        return await real(*args, **kwargs)

    monkeypatch.setattr(rt.store, "lease_jobs", down_at_first)
    probe.release.set()
    [job_id] = await enqueue(rt, clock.now(), 1)
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO, logger="gateway.jobs"):
        task = asyncio.create_task(worker(rt, extra={KIND: probe}).run(stop))
        await until(lambda: probe.ran == [job_id])
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert waits == [0.01, 0.02, 0.04, 0.05, 0.05, 0.05, 0.05]
    leasing = [r for r in caplog.records if "leasing jobs" in r.getMessage()]
    assert [r.levelno for r in leasing] == [logging.ERROR] + [logging.WARNING] * 6 + [
        logging.INFO
    ]
    assert leasing[0].exc_info and not any(r.exc_info for r in leasing[1:])
    assert "works again after 7 failures" in leasing[-1].getMessage()
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
