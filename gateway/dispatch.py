"""The send job: take a message, hand it to its connector, record what happened.

Short retries (a carrier hiccup of a second) happen inside one job run (``_send``);
anything longer becomes a durable retry (the job's ``run_at``), so no coroutine
sleeps for minutes. Statuses only move forward; a message that fails permanently before
the carrier accepted it gives its units back.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
from gateway.jobs import Retry, handler, periodic
from gateway.models import Job, Message, Status
from gateway.outbound import retry_delay
from gateway.runtime import Runtime
from gateway.store import UNAVAILABLE
from gateway.store.base import StatusUpdate

log = logging.getLogger("gateway.dispatch")

SHORT_ATTEMPTS = 3
SHORT_RETRY_FIRST = 0.2  # seconds before the second try; doubled before each next one
# A carrier's retry_after above this is waited out as a durable retry, not in-process.
SHORT_RETRY_MAX = 2.0
AUTH_RETRY = timedelta(seconds=60)
# A connector that says when to try again (``Health.retry_after``, e.g. until its next
# reconnect) is tried again then, within these bounds.
UNHEALTHY_RETRY_MIN = timedelta(seconds=1)
_DONE = {Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED}
# Recording a send the carrier took while the store is unreachable: tried again after
# 0.1 s, 0.2 s … (at most 2 s apart) while the lease has more than RECORD_MARGIN left (and
# for RECORD_LEASE_CAP at most, should a lease be unknown or very long).
RECORD_RETRY_FIRST = 0.1
RECORD_RETRY_MAX = 2.0
RECORD_MARGIN = 1.0
RECORD_LEASE_CAP = 600.0


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
        and (exc.retry_after or 0) <= SHORT_RETRY_MAX
    )


async def _send(connector: Connector, out: OutboundMessage) -> SendResult:
    """``connector.send``, tried up to ``SHORT_ATTEMPTS`` times through a short hiccup:
    0.2 s, then 0.4 s … (at most ``SHORT_RETRY_MAX``, at least the carrier's
    ``retry_after``) between tries. A plain loop: the success path (every send) costs one
    call, where a retry library built its state machine for each send."""
    attempt = 1
    while True:
        try:
            return await connector.send(out)
        except RetryableError as exc:
            if attempt >= SHORT_ATTEMPTS or not _short(exc):
                raise
            backoff = min(SHORT_RETRY_FIRST * 2 ** (attempt - 1), SHORT_RETRY_MAX)
            await asyncio.sleep(max(backoff, exc.retry_after or 0.0))
            attempt += 1


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


@handler("send")
async def send_job(rt: Runtime, job: Job) -> bool | None:
    """Send one outbound message through its connector (True: sent, and the job finished
    with the same write)."""
    msg = await rt.store.get_message(str(job.payload["message_id"]))
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
        if job.attempts >= job.max_attempts:
            await fail(rt, msg, exc.as_error())
            return None
        delay = retry_delay(job.attempts)
        if exc.retry_after:
            delay = max(delay, timedelta(seconds=exc.retry_after))
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
    for as long as the job's lease lasts (at least ``RECORD_MARGIN`` of it left).

    The carrier has the message now: giving up would leave the job to run again once its
    lease expired, and send it a second time. A store that comes back within the lease
    (Redis restarted on its AOF) gets the record instead.
    """
    left = RECORD_LEASE_CAP
    if job.lease_until is not None:
        left = min(left, (job.lease_until - rt.clock.now()).total_seconds())
    deadline = time.monotonic() + left - RECORD_MARGIN
    delay, token = RECORD_RETRY_FIRST, job.token or ""
    while True:
        try:
            await rt.store.complete_send(message_id, update, job.id, token, rt.clock.now())
            return
        except UNAVAILABLE as exc:
            if time.monotonic() + delay >= deadline:
                raise
            log.warning(
                "message %s sent but not recorded (store unavailable: %s); trying again in %.1f s",
                message_id,
                exc,
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECORD_RETRY_MAX)


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


@handler("status")
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
    raise Retry(rt.clock.now() + STATUS_RETRY * 2**job.attempts, "carrier id not known yet")


@periodic
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
