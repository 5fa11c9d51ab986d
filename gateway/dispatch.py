"""The send job: take a message, hand it to its connector, record what happened.

Short retries (a carrier hiccup of a second) happen inside one job run (``_send``);
anything longer becomes a durable retry (the job's ``run_at``), so no coroutine
sleeps for minutes. Statuses only move forward; a message that fails permanently before
the carrier accepted it gives its units back.

The core's job kinds live here, bound to a runtime by :func:`job_handlers` (``send``,
``status``) with the housekeeping of :func:`housekeeping`; ``gateway.process`` hands
them to the worker.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    ErrorCode,
    Health,
    OutboundAttachment,
    OutboundMessage,
    RetryableError,
    SendResult,
    StatusReport,
)
from gateway import window
from gateway.inbound import STATUS_RETRY, Inbound
from gateway.jobs import Housekeeping
from gateway.models import Job, JobHandler, Message, Status
from gateway.retry import Retry, backoff, in_process
from gateway.runtime import Runtime
from gateway.store import UNAVAILABLE
from gateway.store.base import StatusUpdate

log = logging.getLogger("gateway.dispatch")

SHORT_ATTEMPTS = 3
SHORT_RETRY_FIRST = 0.2  # seconds before the second try; doubled before each next one
# A carrier's retry_after above this is waited out as a durable retry, not in-process.
SHORT_RETRY_MAX = 2.0
# A send the carrier refused for now is tried again after 5 s, 20 s, 80 s … at most an hour.
SEND_RETRY_FIRST = 5.0
SEND_RETRY_FACTOR = 4.0
SEND_RETRY_MAX = 3600.0
AUTH_RETRY = timedelta(seconds=60)
# A connector that says when to try again (``Health.retry_after``, e.g. until its next
# reconnect) is tried again then, within these bounds.
UNHEALTHY_RETRY_MIN = timedelta(seconds=1)
STATUS_RETRY_MAX = 600.0
_DONE = {Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED}
# Recording a send the carrier took while the store is unreachable: tried again at once,
# then after 0.1 s, 0.2 s … (at most 2 s apart) while the job's lease is held with more
# than RECORD_MARGIN to spare after the next wait.
RECORD_RETRY_FIRST = 0.1
RECORD_RETRY_MAX = 2.0
RECORD_MARGIN = 1.0


def unhealthy_delay(health: Health) -> timedelta:
    """How long a send waits for an unhealthy connector: a minute when it waits for an
    operator (refused credentials, or it does not say), else until its own retry hint
    (a bind being re-established), at least a second."""
    if health.retry_after is None:
        return AUTH_RETRY
    return min(max(timedelta(seconds=health.retry_after), UNHEALTHY_RETRY_MIN), AUTH_RETRY)


def _short(exc: BaseException) -> bool:
    return (
        isinstance(exc, RetryableError)
        and not isinstance(exc, AuthError)
        and not exc.scheduled
        and (exc.retry_after or 0) <= SHORT_RETRY_MAX
    )


def _hint(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, RetryableError) else None


async def _send(connector: Connector, out: OutboundMessage) -> SendResult:
    """``connector.send``, tried up to ``SHORT_ATTEMPTS`` times through a short hiccup:
    about 0.2 s, then 0.4 s … (at most ``SHORT_RETRY_MAX``, at least the carrier's
    ``retry_after``) between tries. The first try is a plain call: the success path
    (every send) builds no retry state; tenacity takes over only after a short failure."""
    try:
        return await connector.send(out)
    except RetryableError as exc:
        if not _short(exc):
            raise
        return await _send_again(connector, out, exc)


async def _send_again(
    connector: Connector, out: OutboundMessage, failed: RetryableError
) -> SendResult:
    """The rest of ``_send`` after a first try that ``failed`` for a moment."""
    first: RetryableError | None = failed

    async def attempt() -> SendResult:
        nonlocal first
        if first is not None:  # tenacity's first attempt: the one that just failed
            error, first = first, None
            raise error
        return await connector.send(out)

    retrying = in_process(
        attempts=SHORT_ATTEMPTS,
        base=SHORT_RETRY_FIRST,
        cap=SHORT_RETRY_MAX,
        retry_on=_short,
        hint=_hint,
    )
    return await retrying(attempt)


async def outbound_message(rt: Runtime, msg: Message) -> OutboundMessage:
    """The connector's view of a stored message (attachments resolved to blob paths)."""
    attachments = []
    for att_id in msg.attachments:
        att = await rt.store.get_attachment(att_id)
        if att is None:
            continue
        attachments.append(
            OutboundAttachment(
                att.id,
                str(rt.blobs.path(att.sha256)),
                att.content_type,
                att.size,
                att.sha256,
                att.filename,
            )
        )
    meta = dict(msg.meta)
    if msg.fallback:
        meta["fallback"] = msg.fallback
    return OutboundMessage(msg.id, msg.channel, msg.from_, msg.to, msg.text, attachments, meta)


async def fail(rt: Runtime, msg: Message, error: Mapping[str, object]) -> None:
    """Mark ``msg`` failed; units go back when the carrier never accepted it."""
    release = msg.carrier_id is None
    await rt.store.update_message(
        msg.id,
        StatusUpdate(status=Status.FAILED, error=dict(error), release=release),
        rt.clock.now(),
    )


def job_handlers(rt: Runtime) -> dict[str, JobHandler]:
    """The core's job kinds bound to ``rt``: ``send`` and ``status``."""
    return {
        "send": functools.partial(send_job, rt),
        "status": functools.partial(status_job, rt),
    }


def housekeeping(rt: Runtime) -> list[Housekeeping]:
    """The core's periodic housekeeping bound to ``rt``."""
    return [functools.partial(fail_dead_sends, rt)]


async def send_job(rt: Runtime, job: Job) -> bool | None:
    """Send one outbound message through its connector (True: sent, and the job finished
    with the same write)."""
    msg = await rt.store.message_of_job(job)  # on Redis: read with the lease
    if msg is None or Status(msg.status) in _DONE:
        return None  # already handled (e.g. a lease that expired after the work was done)
    now = rt.clock.now()
    state = rt.connectors.get(msg.connector_id or "")
    if state is None:
        # The connector was removed from the configuration: this message cannot go out.
        await fail(
            rt,
            msg,
            {
                "code": ErrorCode.NO_CONNECTOR,
                "message": f"connector {msg.connector_id!r} is no longer configured",
                "carrier_code": None,
                "retryable": False,
            },
        )
        return None
    health = state.health()
    if not health.ok:
        await rt.store.update_message(msg.id, StatusUpdate(status=Status.QUEUED), now)
        raise Retry(
            now + unhealthy_delay(health), f"connector unhealthy: {health.detail}", refund=True
        )
    # The WhatsApp window may have closed while the message waited: Meta would refuse it.
    closed = await window.closed_before_send(rt, msg)
    if closed is not None:
        return await _window_refused(rt, job, msg, closed)
    await rt.store.update_message(msg.id, StatusUpdate(status=Status.SENDING), now)
    connector = state.connector
    try:
        result = await _send(connector, await outbound_message(rt, msg))
    except AuthError as exc:
        rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="auth")
        await rt.store.update_message(msg.id, StatusUpdate(status=Status.QUEUED), rt.clock.now())
        raise Retry(rt.clock.now() + AUTH_RETRY, f"auth: {exc.message}", refund=True) from exc
    except RetryableError as exc:
        rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="retry")
        if exc.scheduled:
            # The connector keeps its own schedule and limits (fax: busy after 3 min, at
            # most 12 dials in 3 h) and fails the message itself when they run out.
            await rt.store.update_message(
                msg.id, StatusUpdate(status=Status.QUEUED, detail=exc.as_error()), rt.clock.now()
            )
            at = rt.clock.now() + timedelta(seconds=exc.retry_after or 0.0)
            raise Retry(at, exc.message, refund=True) from exc
        if job.attempts >= job.max_attempts:
            await fail(rt, msg, exc.as_error())
            return None
        wait = backoff(
            job.attempts, base=SEND_RETRY_FIRST, cap=SEND_RETRY_MAX, factor=SEND_RETRY_FACTOR
        )
        delay = timedelta(seconds=max(wait, exc.retry_after or 0.0))
        await rt.store.update_message(
            msg.id, StatusUpdate(status=Status.QUEUED, detail=exc.as_error()), rt.clock.now()
        )
        raise Retry(rt.clock.now() + delay, exc.message) from exc
    except ConnectorError as exc:
        if exc.code == ErrorCode.WINDOW_CLOSED:  # Meta's 131047
            rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="window")
            return await _window_refused(rt, job, msg, exc.as_error())
        rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="failed")
        await fail(rt, msg, exc.as_error())
        return None
    rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="sent")
    meta = dict(result.meta)
    if result.segments is not None and result.segments != msg.segments:
        meta["carrier_segments"] = result.segments
    parts = [p for p in result.part_ids if p != result.carrier_id]
    if parts:
        meta["parts"] = len(parts) + 1
    update = StatusUpdate(
        status=Status.SENT, carrier_id=result.carrier_id, meta=meta or None, part_ids=tuple(parts)
    )
    # Recorded sent and the job acked in one write: once the carrier has the message, no
    # lease can expire into a second send.
    await record_sent(rt, job, msg.id, update)
    return True


async def record_sent(rt: Runtime, job: Job, message_id: str, update: StatusUpdate) -> None:
    """``complete_send``, tried again while the store cannot be reached (``UNAVAILABLE``)
    for as long as this worker holds the job's lease (``RECORD_MARGIN`` to spare).

    The carrier has the message now: giving up would leave the job to run again once its
    lease expired, and send it a second time. The lease is held as long as
    ``job.lease_until`` says: the worker's heartbeat renews it in place while this runs
    (and cancels the handler should the store give the job to another worker). While the
    store is down the renewals fail too, so the lease and these tries end with the
    visibility timeout; a store that comes back within it (Redis restarted on its AOF)
    gets the record, and the heartbeat keeps the lease from then on.
    """
    token = job.token or ""

    async def record() -> None:
        await rt.store.complete_send(message_id, update, job.id, token, rt.clock.now())

    try:
        await record()  # the usual case: no retrier built
        return
    except UNAVAILABLE:
        if _lease_left(rt, job) <= RECORD_MARGIN:
            raise

    def waiting(seconds: float) -> None:
        log.warning(
            "message %s sent but not recorded (the store cannot be reached); "
            "trying again in %.2f s",
            message_id,
            seconds,
        )

    retrying = in_process(
        attempts=None,
        base=RECORD_RETRY_FIRST,
        cap=RECORD_RETRY_MAX,
        retry_on=lambda exc: isinstance(exc, UNAVAILABLE),
        on_wait=waiting,
        give_up=lambda seconds: _lease_left(rt, job) - seconds <= RECORD_MARGIN,
    )
    await retrying(record)


def _lease_left(rt: Runtime, job: Job) -> float:
    """Seconds the job's lease is still held (0 for a job that was not leased)."""
    if job.lease_until is None:
        return 0.0
    return (job.lease_until - rt.clock.now()).total_seconds()


async def _window_refused(
    rt: Runtime, job: Job, msg: Message, error: Mapping[str, object]
) -> bool | None:
    """WhatsApp refused ``msg`` for the 24-hour window: by SMS if it asked for that
    fallback (moved in one store step, then sent in this run), else failed. Returns what
    ``send_job`` returns."""
    if window.falls_back(msg):
        if (await window.fallback_to_sms(rt, msg, error, requeue=False)).rerouted:
            return await send_job(rt, job)  # now an SMS with an SMS connector
        return None
    await fail(rt, msg, error)
    return None


async def status_job(rt: Runtime, job: Job) -> None:
    """Apply a parked delivery report whose message was not known when it arrived."""
    p = job.payload
    report = StatusReport(
        str(p["connector_id"]),
        str(p["carrier_id"]),
        str(p["status"]),
        datetime.fromisoformat(str(p["at"])),
        p.get("error"),
    )
    if await Inbound(rt).apply_status(report) is not None:
        return
    if job.attempts >= job.max_attempts:
        log.warning(
            "status %s for unknown %s:%s dropped after %d tries",
            report.status,
            report.connector_id,
            report.carrier_id,
            job.attempts,
        )
        return
    # 4 s, 8 s, 16 s … after the first 2 s (``STATUS_RETRY``), at most ten minutes.
    delay = backoff(job.attempts + 1, base=STATUS_RETRY.total_seconds(), cap=STATUS_RETRY_MAX)
    raise Retry(rt.clock.now() + timedelta(seconds=delay), "carrier id not known yet")


async def fail_dead_sends(rt: Runtime) -> int:
    """Fail (and refund) messages whose send job died, e.g. because its workers kept dying.

    Dead jobs stay listed for the operator; this only makes their messages say so.
    """
    failed = 0
    for job in await rt.store.list_dead_jobs(1000):
        if job.kind != "send":
            continue
        msg = await rt.store.get_message(str(job.payload.get("message_id")))
        if msg is None or Status(msg.status) in _DONE:
            continue
        error = {
            "code": ErrorCode.UNKNOWN,
            "message": f"the send job died after {job.attempts} attempts: {job.last_error}",
            "carrier_code": None,
            "retryable": True,
        }
        await fail(rt, msg, error)
        failed += 1
    return failed
