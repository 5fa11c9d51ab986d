"""Lease renewal, on both backends: while a job runs, its worker renews the lease (a
heartbeat), so a job that runs for ten times the visibility timeout runs exactly once
even with several workers (each its own runtime, as separate processes are); a worker
that lost its lease (another worker took the job over) stops the handler instead of
doing the work twice."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gateway.clock import FrozenClock, SystemClock
from gateway.config import parse_settings
from gateway.ids import new_id
from gateway.jobs import Worker
from gateway.models import Job
from gateway.process import open_runtime
from gateway.runtime import Runtime

pytestmark = pytest.mark.anyio
KIND = "test.long"
VISIBILITY = 0.5  # seconds
TIMEOUT = 30.0  # seconds a test waits for something that must happen


async def until(check: Callable[[], bool]) -> None:
    """Let the loop run until ``check()`` holds (failing after ``TIMEOUT``)."""
    async with asyncio.timeout(TIMEOUT):
        while not check():  # noqa: ASYNC110 (state of other tasks: no event to wait on)
            await asyncio.sleep(0.01)


@pytest.fixture
async def runtimes(url: str, tmp_path: Path) -> AsyncIterator[list[Runtime]]:
    """Three runtimes on one store (three processes' worth), the real clock."""
    settings = parse_settings(
        {
            "gateway": {
                "store": url,
                "blobs": str(tmp_path / "blobs"),
                "job_visibility_seconds": VISIBILITY,
                "poll_interval": 0.02,
            }
        }
    )
    opened = [await open_runtime(settings, clock=SystemClock()) for _ in range(3)]
    try:
        yield opened
    finally:
        for rt in opened:
            await rt.aclose()


def counting(
    renew: Callable[[str, str, datetime], Awaitable[bool]], into: list[bool]
) -> Callable[[str, str, datetime], Awaitable[bool]]:
    """``renew_job`` that notes each answer in ``into``."""

    async def counted(job_id: str, token: str, until: datetime) -> bool:
        into.append(await renew(job_id, token, until))
        return into[-1]

    return counted


@pytest.mark.slow  # ten times the visibility timeout, in real time
async def test_a_job_ten_times_longer_than_its_lease_runs_once(
    runtimes: list[Runtime], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[str] = []
    seconds = 10 * VISIBILITY
    renewals: list[bool] = []
    answered_while_running = 0

    async def long_job(job: Job) -> None:
        nonlocal answered_while_running
        runs.append(job.id)
        await asyncio.sleep(seconds)  # a fax call: minutes, longer than the lease
        answered_while_running = len(renewals)

    workers = [
        Worker(rt, {KIND: long_job}, concurrency=2, name=f"w{i}") for i, rt in enumerate(runtimes)
    ]
    for rt in runtimes:
        monkeypatch.setattr(rt.store, "renew_job", counting(rt.store.renew_job, renewals))
    stop = asyncio.Event()
    caplog.set_level(logging.WARNING, logger="gateway.jobs")
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        rt = runtimes[0]
        now = rt.clock.now()
        job = Job(new_id("job"), KIND, {}, now, 3, created_at=now)
        await rt.store.enqueue(job)
        started = time.monotonic()
        await until(lambda: bool(runs))
        counts = rt.store.job_counts
        async with asyncio.timeout(TIMEOUT):
            while (await counts())["leased"]:  # noqa: ASYNC110 (another runtime's work)
                await asyncio.sleep(0.05)
        assert time.monotonic() - started >= seconds
        await asyncio.sleep(3 * VISIBILITY)  # nothing comes back for a second run
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert runs == [job.id]
    assert await rt.store.get_job(job.id) is None  # acked by the one that ran it
    # About three per timeout, all granted while the job ran. One renewal may still have
    # been on its way when it finished, and the ack may have got to the store first.
    assert len(renewals) >= 10 and all(renewals[:answered_while_running])
    assert len(renewals) - answered_while_running <= 1
    assert not [r for r in caplog.records if r.name == "gateway.jobs"]  # no lease lost


@pytest.fixture
async def frozen(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """One runtime with the frozen clock and a short visibility timeout."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, job_visibility_seconds=0.3, poll_interval=0.02)
    rt = await open_runtime(settings, clock=clock)
    try:
        yield rt
    finally:
        await rt.aclose()


class Blocked:
    """A handler whose first run waits until it is cancelled; later runs end at once.
    ``running`` counts the runs in progress (more than one: the work ran twice)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False
        self.calls = 0
        self.running = 0
        self.most = 0

    async def __call__(self, job: Job) -> None:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.calls == 1:
                self.started.set()
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.running -= 1


async def test_a_lost_lease_stops_the_handler(
    frozen: Runtime, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = frozen
    handler = Blocked()
    worker = Worker(rt, {KIND: handler}, concurrency=1, name="slow")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    job = Job(new_id("job"), KIND, {}, clock.now(), 3, created_at=clock.now())
    await rt.store.enqueue(job)
    rt.wake_workers()
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    # The worker stalls past its lease (the clock jumps), another worker takes the job.
    taken: list[Job] = []
    with caplog.at_level(logging.ERROR, logger="gateway.jobs"):
        async with asyncio.timeout(TIMEOUT):
            while not taken:
                clock.advance(seconds=1)
                taken = await rt.store.lease_jobs(clock.now(), "other", timedelta(minutes=5), 1)
        await until(lambda: handler.cancelled)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert any("lease lost" in r.getMessage() for r in caplog.records)
    # The slow worker neither acked nor retried it: the job is the other worker's.
    held = await rt.store.get_job(job.id)
    assert held is not None and held.state == "leased" and held.token == taken[0].token
    assert held.attempts == 2 and held.last_error is None


async def test_a_lease_run_out_while_the_store_is_unreachable_stops_the_handler(
    frozen: Runtime, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    rt = frozen
    handler = Blocked()
    worker = Worker(rt, {KIND: handler}, concurrency=1, name="cut-off")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await rt.store.enqueue(Job(new_id("job"), KIND, {}, clock.now(), 3, created_at=clock.now()))
    rt.wake_workers()
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    tries = 0

    async def unreachable(*args: object) -> bool:
        nonlocal tries
        tries += 1
        raise ConnectionError("store down")

    rt.store.renew_job = unreachable  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="gateway.jobs"):
        clock.advance(seconds=0.2)  # due for renewal, still held: the worker tries again
        await until(lambda: tries >= 2)
        assert not handler.cancelled
        clock.advance(seconds=1)  # the lease ran out meanwhile: stop before a second run
        await until(lambda: handler.cancelled)
        await until(lambda: handler.calls == 2)  # due again, and leased (here by itself)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    messages = [r.getMessage() for r in caplog.records]
    assert any("lease renewal failed" in m for m in messages)
    assert any("ran out while the store could not be reached" in m for m in messages)
    # The job was free again: a worker took it over, after the first run had stopped.
    assert handler.most == 1


# -- a job that finishes while its lease is being renewed ----------------------------------
class Gate:
    """``renew_job`` held at the door: each call says it started, waits for ``open``, then
    asks the store; the store's answers are kept in ``answers``."""

    def __init__(self, rt: Runtime) -> None:
        self.real = rt.store.renew_job
        self.started = asyncio.Event()
        self.open = asyncio.Event()
        self.answers: list[bool] = []

    async def __call__(self, job_id: str, token: str, until: datetime) -> bool:
        self.started.set()
        await self.open.wait()
        self.answers.append(await self.real(job_id, token, until))
        return self.answers[-1]


async def enqueue_one(rt: Runtime) -> Job:
    """A job of ``KIND``, enqueued due now."""
    now = rt.clock.now()
    job = Job(new_id("job"), KIND, {}, now, 3, created_at=now)
    await rt.store.enqueue(job)
    return job


async def test_a_renewal_that_loses_the_race_with_the_ack_is_not_a_lost_lease(
    frozen: Runtime,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler returns while a renewal is on its way; the worker's ack gets to the
    store first, so the store refuses the renewal (the job is gone). That is the job
    finishing, not a lease lost: no error, nothing cancelled."""
    rt = frozen
    gate = Gate(rt)
    monkeypatch.setattr(rt.store, "renew_job", gate)
    real_ack = rt.store.ack_job

    async def ack_then_open(job_id: str, token: str) -> bool:
        acked = await real_ack(job_id, token)
        gate.open.set()  # the renewal reaches the store after the ack
        return acked

    monkeypatch.setattr(rt.store, "ack_job", ack_then_open)
    started, runs, cancelled = asyncio.Event(), [], []

    async def handler(job: Job) -> None:
        runs.append(job.id)
        started.set()
        try:
            await gate.started.wait()  # a renewal is on its way: return now
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise

    job = await enqueue_one(rt)
    stop = asyncio.Event()
    with caplog.at_level(logging.DEBUG, logger="gateway.jobs"):
        task = asyncio.create_task(Worker(rt, {KIND: handler}, name="w").run(stop))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        clock.advance(seconds=0.1)  # a sixth of the lease has passed: the next beat renews
        await until(lambda: bool(gate.answers))
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert gate.answers == [False]  # refused: the ack was first
    assert runs == [job.id] and cancelled == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("finished while its lease was being renewed" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert await rt.store.get_job(job.id) is None


async def test_a_finishing_job_is_not_renewed(
    frozen: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the handler has returned the lease ends with the ack: beats that come while
    the ack is on its way renew nothing."""
    rt = frozen
    renewals: list[bool] = []
    monkeypatch.setattr(rt.store, "renew_job", counting(rt.store.renew_job, renewals))
    real_ack, ack_open, acking = rt.store.ack_job, asyncio.Event(), asyncio.Event()

    async def slow_ack(job_id: str, token: str) -> bool:
        acking.set()
        await ack_open.wait()
        return await real_ack(job_id, token)

    monkeypatch.setattr(rt.store, "ack_job", slow_ack)

    async def handler(job: Job) -> None:
        return None

    job = await enqueue_one(rt)
    worker = Worker(rt, {KIND: handler}, name="w")
    beats = 0
    renew_due = worker._renew_due

    async def counted_beat() -> None:
        nonlocal beats
        beats += 1
        await renew_due()

    monkeypatch.setattr(worker, "_renew_due", counted_beat)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(acking.wait(), TIMEOUT)
    clock.advance(seconds=0.2)  # due for renewal, were it still running
    seen = beats
    await until(lambda: beats >= seen + 2)
    assert renewals == []
    ack_open.set()
    stop.set()
    await asyncio.wait_for(task, TIMEOUT)
    assert await rt.store.get_job(job.id) is None


async def test_a_job_its_handler_acked_itself_is_not_a_lost_lease(
    frozen: Runtime,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that finishes its job with its own last write (as the send job records
    "sent" and acks in one) before it returns: a renewal on its way then is refused
    while the handler still runs. The worker finds the job gone, which no other worker
    could have done while its lease held, and lets the handler return."""
    rt = frozen
    gate = Gate(rt)
    monkeypatch.setattr(rt.store, "renew_job", gate)
    real_get = rt.store.get_job
    looked: list[Job | None] = []

    async def get_job(job_id: str) -> Job | None:
        looked.append(await real_get(job_id))
        return looked[-1]

    monkeypatch.setattr(rt.store, "get_job", get_job)
    started, returning, cancelled = asyncio.Event(), asyncio.Event(), []

    async def handler(job: Job) -> bool:
        started.set()
        await gate.started.wait()
        assert await rt.store.ack_job(job.id, job.token or "")  # its last write
        gate.open.set()
        try:
            await returning.wait()  # still running when the refusal is weighed
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise
        return True

    job = await enqueue_one(rt)
    stop = asyncio.Event()
    with caplog.at_level(logging.DEBUG, logger="gateway.jobs"):
        task = asyncio.create_task(Worker(rt, {KIND: handler}, name="w").run(stop))
        await asyncio.wait_for(started.wait(), TIMEOUT)
        clock.advance(seconds=0.1)
        await until(lambda: bool(looked) or bool(cancelled))
        assert gate.answers == [False] and looked == [None]
        assert cancelled == []
        returning.set()
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert cancelled == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("finished by its handler" in r.getMessage() for r in caplog.records)
    assert await rt.store.get_job(job.id) is None


async def test_a_job_another_worker_finished_after_the_lease_ran_out_stops_the_handler(
    frozen: Runtime,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The job is gone as well when the lease ran out and another worker ran and acked
    it: then the handler still running is doing the work a second time and is stopped."""
    rt = frozen
    handler = Blocked()
    worker = Worker(rt, {KIND: handler}, concurrency=1, name="stalled")
    gate = Gate(rt)
    monkeypatch.setattr(rt.store, "renew_job", gate)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    job = await enqueue_one(rt)
    rt.wake_workers()
    await asyncio.wait_for(handler.started.wait(), TIMEOUT)
    with caplog.at_level(logging.ERROR, logger="gateway.jobs"):
        clock.advance(seconds=1)  # the worker stalled past its lease
        await asyncio.wait_for(gate.started.wait(), TIMEOUT)  # its renewal is on its way
        (taken,) = await rt.store.lease_jobs(clock.now(), "other", timedelta(minutes=5), 1)
        assert await rt.store.ack_job(taken.id, taken.token or "")  # done by the other
        gate.open.set()
        await until(lambda: handler.cancelled)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert gate.answers == [False]
    assert any("lease lost" in r.getMessage() for r in caplog.records)
    assert await rt.store.get_job(job.id) is None
