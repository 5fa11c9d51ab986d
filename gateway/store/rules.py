"""Store rules shared by every backend: applied in memory inside a backend's transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from gateway import jsoncodec
from gateway.events import MESSAGE_STATUS, QUOTA_THRESHOLD, message_event
from gateway.ids import new_id
from gateway.models import Charge, Event, Job, Message, Status, can_transition
from gateway.store.base import Reroute, StatusUpdate

_PART_STATUSES = frozenset({Status.DELIVERED.value, Status.READ.value})


def event_doc(event: Event) -> str:
    """The stored JSON of an event; its ``seq`` is kept beside it by each backend."""
    doc = event.to_dict()
    doc.pop("seq", None)
    return jsoncodec.dumps(doc)


def _parts_done(msg: Message, update: StatusUpdate) -> bool:
    """Record a delivered part of a multi-part message; True once every part is delivered.

    A carrier that bills per segment reports each part; the message is delivered only
    when all of them are (one failed part fails the message, through the normal rule).
    """
    total = msg.meta.get("parts")
    if update.part is None or not isinstance(total, int) or total < 2:
        return True
    done = msg.meta.setdefault("parts_delivered", [])
    if update.part not in done:
        done.append(update.part)
    return len(done) >= total


def apply_update(msg: Message, update: StatusUpdate, now: datetime) -> bool:
    """Apply ``update`` to ``msg`` in memory; returns whether the status changed."""
    changed = False
    if update.status in _PART_STATUSES and not _parts_done(msg, update):
        pass  # more parts to come: the message stays where it is
    elif update.status is not None and can_transition(Status(msg.status), Status(update.status)):
        msg.status = update.status
        changed = True
    if update.carrier_id is not None:
        msg.carrier_id = update.carrier_id
    if update.connector_id is not None:
        msg.connector_id = update.connector_id
    if update.error is not None and (changed or msg.status == Status.FAILED):
        msg.error = dict(update.error)
    if update.meta:
        msg.meta.update(update.meta)
    msg.attachments += [a for a in update.attachments if a not in msg.attachments]
    msg.updated_at = now
    return changed


# A message can change channel only before anyone got it: once delivered, read or
# failed, a late trigger (a duplicate report) must leave it alone.
_REROUTABLE = frozenset(
    {Status.ACCEPTED.value, Status.QUEUED.value, Status.SENDING.value, Status.SENT.value}
)


def can_reroute(msg: Message, reroute: Reroute) -> bool:
    """Whether ``msg`` may still be moved as ``reroute`` says (see ``reroute_message``)."""
    return msg.channel == reroute.from_channel and msg.status in _REROUTABLE


def apply_reroute(msg: Message, reroute: Reroute, period: str, now: datetime) -> None:
    """Move ``msg`` to the reroute's channel in memory, charged to ``period``, ``queued``."""
    msg.channel = reroute.channel
    if reroute.sender:
        msg.from_ = reroute.sender
    msg.connector_id = reroute.connector_id
    msg.units = reroute.units
    msg.segments = reroute.segments
    msg.encoding = reroute.encoding
    msg.carrier_id = None
    msg.meta.update(reroute.meta)
    msg.charged_period = period
    msg.status = Status.QUEUED.value
    msg.updated_at = now


def status_event(msg: Message, now: datetime) -> Event:
    """The ``message.status`` event of a status change."""
    return message_event(MESSAGE_STATUS, msg, now)


def threshold_event(charge: Charge, pct: int, used: int, now: datetime) -> Event:
    """The ``quota.threshold`` event of a member passing ``pct`` percent of an allowance."""
    return Event(
        new_id("evt"),
        QUOTA_THRESHOLD,
        charge.team_id,
        {
            "member_id": charge.member_id,
            "channel": charge.channel,
            "period": charge.period,
            "threshold": pct,
            "included": charge.included,
            "used": used,
        },
        now,
    )


def lease_or_bury(job: Job, now: datetime, owner: str, visibility: timedelta) -> bool:
    """Lease ``job`` in memory, or mark it dead if its attempts are used up."""
    if job.state == "leased" and job.attempts >= job.max_attempts:
        job.state = "dead"
        job.token = None
        job.lease_until = None
        job.last_error = f"lease expired after {job.attempts} attempts (worker died?)"
        return False
    job.attempts += 1
    job.state = "leased"
    job.lease_until = now + visibility
    job.token = f"{owner}:{uuid.uuid4().hex}"
    return True


def schedule_retry(job: Job, run_at: datetime, error: str, refund: bool = False) -> None:
    """Put ``job`` back for ``run_at`` in memory, or mark it dead after max attempts."""
    if refund:
        job.attempts = max(0, job.attempts - 1)
    job.last_error = error
    job.token = None
    job.lease_until = None
    if job.attempts >= job.max_attempts:
        job.state = "dead"
    else:
        job.state = "ready"
        job.run_at = run_at
