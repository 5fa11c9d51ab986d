"""Workers over the durable job queue: lease due jobs (in batches), run each one's
handler, ack it or retry it.

A job is leased with a visibility timeout; if its worker dies, the lease expires and
another worker takes it over. Handlers must therefore be safe to run again (the send
handler checks the message's status first). Durable retries are jobs with a later
``run_at``, never sleeping coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.extensions import Extension, extensions
from gateway.models import Job
from gateway.runtime import Runtime

log = logging.getLogger("gateway.jobs")


@dataclass(slots=True)
class Retry(Exception):
    """Raised by a handler: run the job again at ``at`` (an attempt is used unless ``refund``)."""

    at: datetime
    reason: str
    refund: bool = False


# A handler returns True when its last store write already finished (acked) the job,
# atomically with what it recorded (``Store.complete_send``); else the worker acks it.
Handler = Callable[[Runtime, Job], Awaitable[bool | None]]
HANDLERS: dict[str, Handler] = {}
Periodic = Callable[[Runtime], Awaitable[object]]
PERIODIC: list[Periodic] = []
SWEEP_INTERVAL = 60.0


def handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of ``kind``."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return deco


def periodic(fn: Periodic) -> Periodic:
    """Register housekeeping that every worker runs at start and every minute."""
    PERIODIC.append(fn)
    return fn


async def _run_extension(ext: Extension, rt: Runtime, stop: asyncio.Event) -> None:
    try:
        await ext.run(rt, stop)
    except Exception:
        log.exception("extension %s stopped with an error", ext.name)


class Worker:
    """Runs up to ``concurrency`` jobs at once until ``stop`` is set.

    One leaser takes due jobs in batches: one store write leases as many jobs as there
    are free slots, and each job runs in a task of its own. The leaser sleeps until a
    job is enqueued in this process (``Runtime.wake_workers``), a slot frees while all
    were busy, or ``poll_interval`` passes (jobs enqueued by other processes, retries
    that fell due): an idle process makes no store writes, and a new job wakes one
    leaser, not every slot.
    """

    def __init__(
        self, rt: Runtime, concurrency: int | None = None, name: str | None = None
    ) -> None:
        # Importing dispatch registers the "send" handler (dispatch imports this module,
        # so the import cannot sit at the top); forwarding registers "forward".
        from gateway import dispatch, forwarding  # noqa: F401

        self.rt = rt
        self.concurrency = concurrency or rt.settings.workers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.visibility = timedelta(seconds=rt.settings.job_visibility_seconds)
        self._running: set[asyncio.Task[None]] = set()
        self._full = False  # the leaser waits for a free slot (more may be due)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; jobs in flight finish first."""
        housekeeping = asyncio.create_task(self._housekeeping(stop), name="worker-housekeeping")
        leaser = asyncio.create_task(self._lease_loop(stop), name="worker-leaser")
        services = [
            asyncio.create_task(_run_extension(ext, self.rt, stop), name=f"extension-{ext.name}")
            for ext in extensions()
        ]
        try:
            await stop.wait()
            self.rt.wake_workers()
            await leaser
            while self._running:
                await asyncio.gather(*self._running)
            await housekeeping
            await asyncio.gather(*services)
        except asyncio.CancelledError:  # not a stop: take down every task started here
            for task in (leaser, housekeeping, *services, *self._running):
                task.cancel()
            raise

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        rt = self.rt
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            jobs: list[Job] = []
            if free > 0:
                try:
                    now = rt.clock.now()
                    jobs = await rt.store.lease_jobs(now, self.name, self.visibility, free)
                except Exception:
                    log.exception("leasing jobs failed; trying again")
                    free = 0  # look again after the wait, not at once
                for job in jobs:
                    task = asyncio.create_task(self._run_logged(job), name=f"job-{job.id}")
                    self._running.add(task)
                    task.add_done_callback(self._finished)
            # Every slot asked for was filled, so more may be due: lease again as soon as
            # a slot is free (at once if jobs finished meanwhile). Otherwise the queue had
            # nothing more due: only a new job or the poll interval wakes this loop.
            more = free > 0 and len(jobs) == free
            if more and len(self._running) < self.concurrency:
                continue
            self._full = more or free == 0
            await rt.wait_for_work(rt.settings.poll_interval)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._full:
            self._full = False
            self.rt.wake_workers()

    async def _run_logged(self, job: Job) -> None:
        try:
            await self._run(job)
        except Exception:
            log.exception("job %s (%s): worker error; its lease will expire", job.id, job.kind)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for fn in PERIODIC:
                try:
                    await fn(self.rt)
                except Exception:
                    log.exception("housekeeping %s failed", fn.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL)

    async def run_once(self, owner: str | None = None) -> bool:
        """Lease and run one due job; False when none was due."""
        rt = self.rt
        jobs = await rt.store.lease_jobs(rt.clock.now(), owner or self.name, self.visibility, 1)
        if not jobs:
            return False
        await self._run(jobs[0])
        return True

    async def _run(self, job: Job) -> None:
        """Run a leased job's handler, then ack it, or put it back for a retry."""
        rt = self.rt
        token = job.token or ""
        fn = HANDLERS.get(job.kind)
        try:
            if fn is None:
                raise RuntimeError(f"no handler for job kind {job.kind!r}")
            finished = await fn(rt, job)
        except Retry as r:
            state = await rt.store.retry_job(job.id, token, r.at, r.reason, refund=r.refund)
            log.info("job %s (%s) retry at %s: %s -> %s", job.id, job.kind, r.at, r.reason, state)
        except Exception as exc:
            # An unexpected error: keep the job, back off, and let max_attempts bury it.
            detail = "".join(traceback.format_exception_only(exc)).strip()
            log.exception("job %s (%s) failed", job.id, job.kind)
            delay = timedelta(seconds=min(3600, 5 * 2 ** max(0, job.attempts - 1)))
            await rt.store.retry_job(job.id, token, rt.clock.now() + delay, detail)
        else:
            if not finished:  # True: the handler acked it with its last write
                await rt.store.ack_job(job.id, token)
