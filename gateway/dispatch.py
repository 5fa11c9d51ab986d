"""The send job: take a message, hand it to its connector, record what happened.

Short retries (a carrier hiccup of a second) are declared with tenacity inside one job
run; anything longer becomes a durable retry (the job's ``run_at``), so no coroutine
sleeps for minutes. Statuses only move forward; a message that fails permanently before
the carrier accepted it gives its units back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    ErrorCode,
    OutboundAttachment,
    OutboundMessage,
    RetryableError,
    SendResult,
    StatusReport,
)
from gateway.inbound import STATUS_RETRY, Inbound
from gateway.jobs import Retry, handler, periodic
from gateway.models import Job, Message, Status
from gateway.outbound import retry_delay
from gateway.runtime import Runtime
from gateway.store.base import StatusUpdate

log = logging.getLogger("gateway.dispatch")

SHORT_ATTEMPTS = 3
# A carrier's retry_after above this is waited out as a durable retry, not in-process.
SHORT_RETRY_MAX = 2.0
AUTH_RETRY = timedelta(seconds=60)
_DONE = {Status.SENT, Status.DELIVERED, Status.READ, Status.FAILED}


def _short(exc: BaseException) -> bool:
    return (
        isinstance(exc, RetryableError)
        and not isinstance(exc, AuthError)
        and (exc.retry_after or 0) <= SHORT_RETRY_MAX
    )


async def _send(connector: Connector, out: OutboundMessage) -> SendResult:
    retrying = AsyncRetrying(
        retry=retry_if_exception(_short),
        stop=stop_after_attempt(SHORT_ATTEMPTS),
        wait=wait_exponential(multiplier=0.2, max=SHORT_RETRY_MAX),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await connector.send(out)
    raise AssertionError("unreachable: tenacity reraises")


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
async def send_job(rt: Runtime, job: Job) -> None:
    """Send one outbound message through its connector."""
    msg = await rt.store.get_message(str(job.payload["message_id"]))
    if msg is None or Status(msg.status) in _DONE:
        return  # already handled (e.g. a lease that expired after the work was done)
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
        return
    health = state.health()
    if not health.ok:
        await rt.store.update_message(msg.id, StatusUpdate(status=Status.QUEUED), now)
        raise Retry(now + AUTH_RETRY, f"connector unhealthy: {health.detail}", refund=True)
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
            return
        delay = retry_delay(job.attempts)
        if exc.retry_after:
            delay = max(delay, timedelta(seconds=exc.retry_after))
        await rt.store.update_message(
            msg.id, StatusUpdate(status=Status.QUEUED, detail=exc.as_error()), rt.clock.now()
        )
        raise Retry(rt.clock.now() + delay, exc.message) from exc
    except ConnectorError as exc:
        rt.metrics.inc("gateway_sends_total", connector=connector.id, outcome="failed")
        await fail(rt, msg, exc.as_error())
        return
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
    await rt.store.update_message(msg.id, update, rt.clock.now())


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
