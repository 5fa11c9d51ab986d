"""Workers over the durable job queue: lease a job, run its handler, ack or retry.

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

from gateway.models import Job
from gateway.runtime import Runtime

log = logging.getLogger("gateway.jobs")


@dataclass(slots=True)
class Retry(Exception):
    """Raised by a handler: run the job again at ``at`` (an attempt is used unless ``refund``)."""

    at: datetime
    reason: str
    refund: bool = False


Handler = Callable[[Runtime, Job], Awaitable[None]]
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


class Worker:
    """``concurrency`` loops that lease and run jobs until ``stop`` is set."""

    def __init__(
        self, rt: Runtime, concurrency: int | None = None, name: str | None = None
    ) -> None:
        # Importing dispatch registers the "send" handler (dispatch imports this module,
        # so the import cannot sit at the top).
        from gateway import dispatch  # noqa: F401

        self.rt = rt
        self.concurrency = concurrency or rt.settings.workers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.visibility = timedelta(seconds=rt.settings.job_visibility_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; jobs in flight finish first."""
        loops = [
            asyncio.create_task(self._loop(stop, i), name=f"worker-{i}")
            for i in range(self.concurrency)
        ]
        loops.append(asyncio.create_task(self._housekeeping(stop), name="worker-housekeeping"))
        await stop.wait()
        self.rt.wake_workers()
        await asyncio.gather(*loops)

    async def _loop(self, stop: asyncio.Event, index: int) -> None:
        while not stop.is_set():
            try:
                ran = await self.run_once(f"{self.name}/{index}")
            except Exception:
                log.exception("worker loop error; continuing")
                ran = False
            if not ran:
                await self.rt.wait_for_work(self.rt.settings.poll_interval)

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
        job = await rt.store.lease_job(rt.clock.now(), owner or self.name, self.visibility)
        if job is None:
            return False
        token = job.token or ""
        fn = HANDLERS.get(job.kind)
        try:
            if fn is None:
                raise RuntimeError(f"no handler for job kind {job.kind!r}")
            await fn(rt, job)
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
            await rt.store.ack_job(job.id, token)
        return True
