"""The job bell: a job enqueued by one process wakes an idle worker of another process
sharing the Redis store at once (the poll interval is set far beyond these tests, so
only a ring can move a worker); SQLite has no bell (one process)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import SystemClock
from gateway.config import Settings, parse_settings
from gateway.ids import new_id
from gateway.jobs import Worker
from gateway.models import Job
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.conftest import store_url

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
NEVER = 3600.0  # a poll interval no test waits for
TIMEOUT = 20.0  # seconds a test waits for something that must happen
KIND = "test.bell"


def settings_for(url: str, tmp_path: Path, **gateway: object) -> Settings:
    """A store at ``url``, polling every hour (and more ``[gateway]`` keys)."""
    blobs = str(tmp_path / "blobs")
    return parse_settings(
        {"gateway": {"store": url, "blobs": blobs, "poll_interval": NEVER, **gateway}}
    )


def new_job(kind: str = KIND) -> Job:
    now = SystemClock().now()
    return Job(new_id("job"), kind, {}, now, 3, created_at=now)


def start_worker(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``gateway worker`` as a real process."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
        env=env, cwd=ROOT, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
async def pair(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two runtimes (as two processes would have) on one Redis store."""
    settings = settings_for(store_url("redis", redis_url, tmp_path), tmp_path)
    a = await open_runtime(settings)
    b = await open_runtime(settings)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_job_enqueued_elsewhere_wakes_an_idle_worker(pair: tuple[Runtime, Runtime]) -> None:
    a, b = pair
    ran: list[str] = []
    done = asyncio.Event()

    async def handler(job: Job) -> bool | None:
        ran.append(job.id)
        done.set()
        return None

    stop = asyncio.Event()
    task = asyncio.create_task(Worker(a, {KIND: handler}, concurrency=4).run(stop))
    try:
        for _ in range(3):  # one after the other, each while the worker is idle again
            done.clear()
            job = new_job()
            await b.store.enqueue(job)
            b.wake_workers()  # B has no worker: only the bell reaches A
            async with asyncio.timeout(TIMEOUT):
                await done.wait()
            assert ran[-1] == job.id
    finally:
        stop.set()
        await task
    assert len(ran) == 3


async def test_rings_are_folded_and_bounded(pair: tuple[Runtime, Runtime]) -> None:
    _, b = pair
    for _ in range(100):
        b.wake_workers()
    await asyncio.sleep(0)  # the tick's batch goes out
    # 100 rings in one tick: one goes out, the others fold into one more after it.
    took = 0
    while await b.store.wait_job_bell(0.2):
        took += 1
    assert 1 <= took <= 2


def count_rings(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loop times at which ``rt`` rang its store's bell."""
    rings: list[float] = []
    ring = rt.store.ring_job_bell

    def counted() -> None:
        rings.append(asyncio.get_running_loop().time())
        ring()

    monkeypatch.setattr(rt.store, "ring_job_bell", counted)
    return rings


async def test_rings_are_paced_and_the_jobs_between_wait_for_the_next(
    pair: tuple[Runtime, Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most one ring per ``bell_interval``: a lone job rings at once; jobs enqueued
    sooner after a ring get one ring together when the interval has passed."""
    _, b = pair
    interval = b.settings.bell_interval
    assert interval == 0.05  # the default
    rings = count_rings(b, monkeypatch)
    b.wake_workers()
    assert len(rings) == 1  # at once
    for _ in range(5):
        b.wake_workers()
    assert len(rings) == 1  # the next waits for the interval
    await asyncio.sleep(interval * 1.6)
    assert len(rings) == 2 and rings[1] - rings[0] >= interval * 0.99
    await asyncio.sleep(interval * 1.6)
    assert len(rings) == 2  # nothing was enqueued since: no ring
    b.wake_workers()
    assert len(rings) == 3  # quiet for longer than the interval: at once again
    took = 0
    while await b.store.wait_job_bell(0.2):
        took += 1
    assert took == 3


async def test_a_paced_ring_wakes_a_worker_for_every_job_enqueued_before_it(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs enqueued within the interval after a ring wait for the next ring (the
    worker polls once an hour), which makes one lease take them all."""
    settings = settings_for(store_url("redis", redis_url, tmp_path), tmp_path, bell_interval=1)
    a, b = await open_runtime(settings), await open_runtime(settings)
    rings = count_rings(b, monkeypatch)
    leases: list[int] = []
    lease = a.store.lease_jobs

    async def counted(*args: Any, **kw: Any) -> list[Job]:
        got = await lease(*args, **kw)
        if got:
            leases.append(len(got))
        return got

    monkeypatch.setattr(a.store, "lease_jobs", counted)
    ran: list[str] = []
    first_ran, all_ran = asyncio.Event(), asyncio.Event()

    async def handler(job: Job) -> bool | None:
        ran.append(job.id)
        first_ran.set()
        if len(ran) == 6:
            all_ran.set()
        return None

    stop = asyncio.Event()
    task = asyncio.create_task(Worker(a, {KIND: handler}, concurrency=8).run(stop))
    try:
        await asyncio.sleep(0.2)  # the worker is idle, listening for the bell
        jobs = [new_job() for _ in range(6)]
        await b.store.enqueue(jobs[0])
        b.wake_workers()  # B has no worker: only the bell reaches A
        async with asyncio.timeout(TIMEOUT):
            await first_ran.wait()
        assert len(rings) == 1
        for job in jobs[1:]:
            await b.store.enqueue(job)
            b.wake_workers()
        assert len(rings) == 1 and ran == [jobs[0].id]  # they wait for the next ring
        async with asyncio.timeout(TIMEOUT):
            await all_ran.wait()
    finally:
        stop.set()
        await task
        await a.aclose()
        await b.aclose()
    assert sorted(ran) == sorted(j.id for j in jobs)
    assert len(rings) == 2 and rings[1] - rings[0] >= 0.99
    assert leases == [1, 5]  # the paced ring: one lease for the five


async def test_with_no_interval_every_job_rings(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(store_url("redis", redis_url, tmp_path), tmp_path, bell_interval=0)
    rt = await open_runtime(settings)
    try:
        rings = count_rings(rt, monkeypatch)
        for _ in range(3):
            rt.wake_workers()
        assert len(rings) == 3  # the store folds the ones made while one is on its way
    finally:
        await rt.aclose()


async def test_sqlite_has_no_bell(tmp_path: Path) -> None:
    rt = await open_runtime(settings_for(f"sqlite:///{tmp_path}/g.db", tmp_path))
    try:
        assert rt.store.shared is False
        rt.wake_workers()  # wakes this process only; nothing to ring
        assert await rt.store.wait_job_bell(0.01) is False
    finally:
        await rt.aclose()


@pytest.mark.slow
async def test_a_worker_process_is_woken_by_another_process(
    redis_url: str, tmp_path: Path
) -> None:
    url = store_url("redis", redis_url, tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(f"[gateway]\nworkers = 4\npoll_interval = {NEVER}\n")
    env = {**os.environ, "GATEWAY_STORE": url, "GATEWAY_BLOBS": str(tmp_path / "blobs")}
    settings = settings_for(url, tmp_path)
    rt = await open_runtime(settings)
    try:
        # "forward" is a core kind: the worker process runs it (this empty payload fails,
        # which is a retry with one attempt used) — taken, either way.
        async def taken(job: Job) -> bool:
            seen = await rt.store.get_job(job.id)
            return seen is None or seen.attempts > 0

        first = new_job("forward")
        await rt.store.enqueue(first)  # found by the worker's first look at start
        proc = start_worker(config, env)
        try:
            async with asyncio.timeout(60):
                while not await taken(first):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            # The worker is idle now; its next poll is an hour away.
            quiet = new_job("forward")
            await rt.store.enqueue(quiet)  # enqueued without a ring: stays
            rung = new_job("forward")
            await rt.store.enqueue(rung)
            rt.wake_workers()
            async with asyncio.timeout(TIMEOUT):
                while not await taken(rung):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        # The ring woke the worker, which leased every due job in one batch: the quiet
        # one went along (it was due), which shows one ring serves a whole batch.
        assert await taken(quiet)
    finally:
        await rt.aclose()
