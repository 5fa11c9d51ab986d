"""Workers over the durable job queue: lease due jobs (in batches), run each one's
handler, keep its lease while it runs, then ack it or retry it.

A job is leased with a visibility timeout; while its handler runs, the worker renews the
lease (a heartbeat every third of the timeout), so a fax call of several minutes is not
taken over by another worker. If the worker dies, the renewals stop, the lease expires
and another worker takes the job over. Handlers must therefore be safe to run again (the
send handler checks the message's status first). A renewal that is refused (another
worker holds the job now) cancels the handler: it must not go on doing the work twice.
A job that is finishing is not renewed, and a renewal that was on its way when the job
finished (the worker's ack, or the handler's own last write, got to the store first) is
refused, as it should be: that is not a lost lease.
Each renewal moves the running job's ``lease_until`` (the handler's own ``Job`` object),
so a handler knows how long it still holds the job (``dispatch.record_sent`` keeps trying
while it does).
Durable retries are jobs with a later ``run_at``, never sleeping coroutines.

A worker runs the kinds it is given (the core's, its connectors', its extensions'; see
``gateway.process``) and leases only those: a job of a kind that no running process
handles (its connector was removed from the configuration) waits in the queue with its
attempts untouched, shown by ``/metrics`` and ``gateway admin jobs list``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.models import Job, JobHandler
from gateway.retry import Failing, Retry, backoff
from gateway.runtime import Runtime

log = logging.getLogger("gateway.jobs")

# Housekeeping a worker runs at start and every ``SWEEP_INTERVAL`` (bound to its runtime).
Housekeeping = Callable[[], Awaitable[object]]
# A background service run beside the job loops until its stop event is set (an
# extension's ``run``, bound to the runtime).
Service = Callable[[asyncio.Event], Awaitable[None]]
SWEEP_INTERVAL = 60.0
# Longest wait for a ring of the job bell in one call (the listener then checks that its
# leaser is still idle).
BELL_WAIT = 1.0
# An unexpected error in a handler: tried again after 5 s, 10 s, 20 s … at most an hour.
ERROR_RETRY_FIRST = 5.0
ERROR_RETRY_MAX = 3600.0


@dataclass(slots=True)
class _Lease:
    """A job running in this worker, and the task that runs it."""

    job: Job
    task: asyncio.Task[object] | None
    lost: bool = False
    # Its handler has returned (or raised): the ack or retry follows, and the lease ends
    # with it, so it is not renewed any more.
    finishing: bool = False


class Worker:
    """Runs up to ``concurrency`` jobs at once until ``stop`` is set.

    One leaser takes due jobs in batches: one store write leases as many jobs as there
    are free slots, and each job runs in a task of its own. The leaser sleeps until a
    job is enqueued in this process (``Runtime.wake_workers``), a slot frees while all
    were busy, or ``poll_interval`` passes (jobs enqueued by other processes, retries
    that fell due): an idle process makes no store writes, and a new job wakes one
    leaser, not every slot. One heartbeat renews the leases of the jobs that run longer
    than a sixth of the visibility timeout (a quick job costs no renewal).
    """

    def __init__(
        self,
        rt: Runtime,
        handlers: Mapping[str, JobHandler],
        *,
        housekeeping: Sequence[Housekeeping] = (),
        services: Mapping[str, Service] | None = None,
        concurrency: int | None = None,
        name: str | None = None,
    ) -> None:
        self.rt = rt
        self.handlers = dict(handlers)
        self.kinds = frozenset(self.handlers)
        self.housekeeping = tuple(housekeeping)
        self.services = dict(services or {})
        self.concurrency = concurrency or rt.settings.workers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.visibility = timedelta(seconds=rt.settings.job_visibility_seconds)
        self._running: set[asyncio.Task[None]] = set()
        self._leases: dict[str, _Lease] = {}
        self._full = False  # the leaser waits for a free slot (more may be due)
        self._idle = asyncio.Event()  # the leaser waits for work with free slots

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; jobs in flight finish first."""
        done = asyncio.Event()  # every job has finished: the heartbeat may stop
        heartbeat = asyncio.create_task(self._heartbeat(done), name="worker-heartbeat")
        housekeeping = asyncio.create_task(self._housekeeping(stop), name="worker-housekeeping")
        leaser = asyncio.create_task(self._lease_loop(stop), name="worker-leaser")
        bell = None
        if self.rt.store.shared:
            bell = asyncio.create_task(self._bell(stop), name="worker-bell")
        services = [
            asyncio.create_task(_logged(name, run, stop), name=f"service-{name}")
            for name, run in self.services.items()
        ]
        try:
            await stop.wait()
            self.rt.wake_here()
            if bell is not None:
                bell.cancel()  # it may be blocked in the store for a second
                with contextlib.suppress(asyncio.CancelledError):
                    await bell
            await leaser
            while self._running:
                await asyncio.gather(*self._running)
            done.set()
            await heartbeat
            await housekeeping
            await asyncio.gather(*services)
        except asyncio.CancelledError:  # not a stop: take down every task started here
            for task in (leaser, heartbeat, housekeeping, *services, *self._running):
                task.cancel()
            if bell is not None:
                bell.cancel()
            raise

    async def _lease_loop(self, stop: asyncio.Event) -> None:
        rt = self.rt
        # The store down: tried again after a poll interval, twice as long after each
        # failure in a row up to FAILING_WAIT_MAX, one traceback per outage.
        failing = Failing("leasing jobs", rt.settings.poll_interval, log)
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            jobs: list[Job] = []
            if free > 0:
                try:
                    now = rt.clock.now()
                    jobs = await rt.store.lease_jobs(
                        now, self.name, self.visibility, free, kinds=self.kinds
                    )
                except Exception as exc:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), failing.failed(exc))
                    continue
                failing.ok()
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
            if not self._full:
                self._idle.set()
            await rt.wait_for_work(rt.settings.poll_interval)
            self._idle.clear()

    async def _bell(self, stop: asyncio.Event) -> None:
        """While the leaser is idle with free slots, take rings of the store's job bell
        (another process enqueued a job) and wake it."""
        rt = self.rt
        failing = Failing("waiting for the job bell", rt.settings.poll_interval, log)
        while not stop.is_set():
            await self._idle.wait()
            try:
                rung = await rt.store.wait_job_bell(BELL_WAIT)
            except Exception as exc:
                await asyncio.sleep(failing.failed(exc))
                continue
            failing.ok()
            if rung:
                rt.wake_here()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._full:
            self._full = False
            self.rt.wake_here()

    async def _run_logged(self, job: Job) -> None:
        try:
            await self._run(job)
        except Exception:
            log.exception("job %s (%s): worker error; its lease will expire", job.id, job.kind)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for fn in self.housekeeping:
                try:
                    await fn()
                except Exception:
                    log.exception("housekeeping %s failed", getattr(fn, "__name__", fn))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL)

    async def run_once(self, owner: str | None = None) -> bool:
        """Lease and run one due job (its lease renewed while it runs); False when none
        was due."""
        rt = self.rt
        jobs = await rt.store.lease_jobs(
            rt.clock.now(), owner or self.name, self.visibility, 1, kinds=self.kinds
        )
        if not jobs:
            return False
        done = asyncio.Event()
        heartbeat = asyncio.create_task(self._heartbeat(done), name="worker-heartbeat")
        try:
            await self._run(jobs[0])
        finally:
            done.set()
            await heartbeat
        return True

    # -- the lease of a running job ------------------------------------------------------
    async def _heartbeat(self, done: asyncio.Event) -> None:
        """Renew the leases of long-running jobs every third of the visibility timeout,
        until ``done``; a job whose lease is lost (or ran out while the store could not
        be reached) is cancelled."""
        interval = self.visibility.total_seconds() / 3
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), interval)
            if self._leases:
                await self._renew_due()

    async def _renew_due(self) -> None:
        now = self.rt.clock.now()
        # Held for a sixth of the timeout or more: renewed at this beat, while at least
        # half of the lease remains for a slow store (a beat comes every third). A job
        # that ends sooner (every send) costs no renewal.
        due = [
            lease
            for lease in self._leases.values()
            if not lease.lost
            and not lease.finishing
            and _remaining(lease.job, now) <= self.visibility * 5 / 6
        ]
        results = await asyncio.gather(
            *(self._renew(lease, now) for lease in due), return_exceptions=True
        )
        for lease, result in zip(due, results, strict=True):
            job = lease.job
            if result is True:
                continue
            if lease.finishing:
                # The handler returned while the renewal was on its way, and its ack (or
                # retry) got to the store first: the lease ended with the job, as it should.
                log.debug("job %s (%s): finished while its lease was being renewed",
                          job.id, job.kind)  # fmt: skip
                continue
            if isinstance(result, BaseException):
                if _remaining(job, self.rt.clock.now()) > timedelta(0):
                    log.warning("job %s (%s): lease renewal failed (%r); trying again",
                                job.id, job.kind, result)  # fmt: skip
                    continue
                why = "its lease ran out while the store could not be reached"
            elif await self._finished_by_its_handler(lease, now):
                continue
            else:
                why = "the store says another worker holds it"
            log.error("job %s (%s): lease lost (%s); stopping its handler", job.id, job.kind, why)
            lease.lost = True
            if lease.task is not None:
                lease.task.cancel()

    async def _finished_by_its_handler(self, lease: _Lease, asked: datetime) -> bool:
        """Whether a refused renewal only means that the handler finished the job itself:
        a handler may ack its job with its last write (the send job records "sent" and
        acks in one) a moment before it returns. The job is then gone from the store,
        and while this worker's lease held (at ``asked``, when the renewal was sent) no
        other worker could have taken it, so nobody else finished it."""
        job = lease.job
        if _remaining(job, asked) <= timedelta(0):
            return False  # the lease had run out: another worker may have run and acked it
        try:
            gone = await self.rt.store.get_job(job.id) is None
        except Exception as exc:
            log.warning("job %s (%s): cannot tell why its lease renewal was refused (%r)",
                        job.id, job.kind, exc)  # fmt: skip
            return False
        if gone or lease.finishing:
            log.debug("job %s (%s): finished by its handler while its lease was being "
                      "renewed", job.id, job.kind)  # fmt: skip
            return True
        return False

    async def _renew(self, lease: _Lease, now: datetime) -> bool:
        job = lease.job
        until = now + self.visibility
        renewed = await self.rt.store.renew_job(job.id, job.token or "", until)
        if renewed:
            job.lease_until = until
        return renewed

    async def _run(self, job: Job) -> None:
        """Run a leased job's handler, then ack it, or put it back for a retry; a job
        whose lease is lost meanwhile is left to the worker that holds it now."""
        lease = self._leases[job.id] = _Lease(job, asyncio.current_task())
        try:
            await self._handle(job, lease)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # Cancelled by the heartbeat only (not also by a shutdown): swallowed here.
            if not lease.lost or task is None or task.uncancel() > 0:
                raise
        finally:
            del self._leases[job.id]

    async def _handle(self, job: Job, lease: _Lease) -> None:
        rt = self.rt
        token = job.token or ""
        fn = self.handlers.get(job.kind)
        started, outcome = time.perf_counter(), "error"
        try:
            try:
                if fn is None:  # leased only by kind: a store that ignored ``kinds``
                    raise RuntimeError(f"no handler for job kind {job.kind!r}")
                finished = await fn(job)
                outcome = "done"
            except Retry:
                outcome = "retry"
                raise
            finally:
                lease.finishing = True  # the ack or retry follows: no more renewals
                rt.metrics.observe(
                    "gateway_job_duration_seconds",
                    (("kind", job.kind), ("outcome", outcome)),
                    time.perf_counter() - started,
                )
        except Retry as r:
            if not lease.lost:
                state = await rt.store.retry_job(job.id, token, r.at, r.reason, refund=r.refund)
                log.info("job %s (%s) retry at %s: %s -> %s", job.id, job.kind, r.at, r.reason,
                         state)  # fmt: skip
        except Exception as exc:
            # An unexpected error: keep the job, back off, and let max_attempts bury it.
            detail = "".join(traceback.format_exception_only(exc)).strip()
            log.exception("job %s (%s) failed", job.id, job.kind)
            if not lease.lost:
                delay = backoff(job.attempts, base=ERROR_RETRY_FIRST, cap=ERROR_RETRY_MAX)
                at = rt.clock.now() + timedelta(seconds=delay)
                await rt.store.retry_job(job.id, token, at, detail)
        else:
            # True: the handler acked the job with its last write.
            if not finished and not lease.lost:
                await rt.store.ack_job(job.id, token)


def _remaining(job: Job, now: datetime) -> timedelta:
    """How long ``job``'s lease still holds."""
    return (job.lease_until or now) - now


async def _logged(name: str, run: Service, stop: asyncio.Event) -> None:
    """Run a background service beside the job loops; its failure stops only itself."""
    try:
        await run(stop)
    except Exception:
        log.exception("service %s stopped with an error", name)
