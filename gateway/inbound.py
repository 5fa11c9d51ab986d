"""The one inbound path for every connector: dedupe, route by number, store, emit.

Connectors verify the carrier's signature and normalize; this module does the rest so
that every channel behaves the same: a duplicate from the carrier never creates a second
message, and a delivery report never moves a status backwards.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from connectors.base import ErrorCode, InboundMessage, StatusReport
from gateway import events, forwarding, window
from gateway.extensions import follow_up_kinds
from gateway.ids import new_id
from gateway.models import Attachment, Channel, Direction, Job, Message, Status
from gateway.store.base import StatusUpdate

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("gateway.inbound")
# First retry of a delivery report whose message is not known yet (see ``status``).
STATUS_RETRY = timedelta(seconds=2)


class Inbound:
    """The ``InboundSink`` every connector is given."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def inbound(self, message: InboundMessage) -> Message | None:
        """Store an inbound message once; None when no member owns the number it went to."""
        rt = self.rt
        member = await rt.directory.member_by_number(message.to)
        channel = Channel(message.channel)
        if member is None or member.number_for(channel) != message.to:
            log.warning(
                "inbound %s %s to %s: no member owns that number; dropped",
                message.channel,
                message.carrier_id,
                message.to,
            )
            return None
        now = rt.clock.now()
        conversation = await rt.directory.conversation(
            member.team_id, member.id, message.to, message.from_, now
        )
        attachment_ids = []
        for media in message.attachments:
            if media.data is None:
                continue  # fetched later by the connector's media job
            sha = rt.blobs.put(media.data)
            att = Attachment(
                new_id("att"),
                member.team_id,
                sha,
                len(media.data),
                media.content_type,
                media.filename,
                now,
                member.id,
            )
            await rt.store.put_attachment(att)
            attachment_ids.append(att.id)
        stored = Message(
            id=new_id("msg"),
            team_id=member.team_id,
            member_id=member.id,
            conversation_id=conversation.id,
            channel=channel.value,
            direction=Direction.INBOUND.value,
            from_=message.from_,
            to=message.to,
            text=message.text,
            attachments=attachment_ids,
            status=Status.RECEIVED.value,
            units=0,  # inbound is free
            segments=message.segments,
            encoding=None,
            created_at=message.received_at,
            updated_at=now,
            connector_id=message.connector_id,
            carrier_id=message.carrier_id,
            meta=dict(message.meta),
        )
        event = events.message_event(events.MESSAGE_RECEIVED, stored, now)
        # Forwards are jobs written with the message: none is lost if the process dies
        # after the carrier got its 2xx, and a duplicate (nothing written) forwards nothing.
        forwards = await forwarding.jobs_for(rt, member, stored)
        # The channel's follow-up jobs (``services.ChannelJobs``: a received fax becomes a
        # PDF and a mail) are written with the message too, for the same reason.
        payload = {"message_id": stored.id}
        attempts = rt.settings.job_max_attempts
        forwards += [
            Job(new_id("job"), kind, payload, now, attempts, created_at=now)
            for kind in follow_up_kinds(rt, channel.value)
        ]
        result, created = await rt.store.store_inbound(
            stored, f"{message.connector_id}:{message.carrier_id}", [event], forwards
        )
        if created:
            rt.metrics.inc("gateway_messages_received_total", channel=channel.value)
            if forwards:
                rt.wake_workers()
        return result

    async def status(self, report: StatusReport) -> Message | None:
        """Apply a delivery report to the message the carrier knows by its id.

        A report can overtake the send it is about (the carrier's receipt or callback
        arrives before the send's reply is stored): an unknown id is parked as a
        ``status`` job and tried again a few times before it is dropped.
        """
        msg = await self.apply_status(report)
        if msg is None:
            rt = self.rt
            now = rt.clock.now()
            payload = {
                "connector_id": report.connector_id,
                "carrier_id": report.carrier_id,
                "status": report.status,
                "at": report.at.isoformat(),
                "error": report.error,
            }
            job = Job(new_id("job"), "status", payload, now + STATUS_RETRY, 5, created_at=now)
            await rt.store.enqueue(job)
        return msg

    async def apply_status(self, report: StatusReport) -> Message | None:
        """Apply ``report`` now; None when no message has that carrier id (yet)."""
        rt = self.rt
        error = report.error or {}
        if report.status != Status.FAILED or error.get("code") != ErrorCode.WINDOW_CLOSED:
            # Every report but WhatsApp's closed window: found and applied in one store
            # write (one about an earlier attempt on another connector changes nothing).
            update = StatusUpdate(status=report.status, error=report.error, part=report.carrier_id)
            applied = await rt.store.update_by_carrier_id(
                report.connector_id, report.carrier_id, update, rt.clock.now()
            )
            return applied[0] if applied else None
        msg = await rt.store.message_by_carrier_id(report.connector_id, report.carrier_id)
        if msg is None:
            return None
        # -- the WhatsApp window (gateway/window.py) --
        if msg.connector_id != report.connector_id:
            return msg  # about an earlier attempt: the SMS fallback has taken the message over
        error = report.error or {}
        if (
            report.status == Status.FAILED
            and error.get("code") == ErrorCode.WINDOW_CLOSED
            and window.falls_back(msg)
        ):
            return (await window.fallback_to_sms(rt, msg, error, requeue=True)).message
        # -- end of the WhatsApp window --
        update = StatusUpdate(status=report.status, error=report.error, part=report.carrier_id)
        result = await rt.store.update_message(msg.id, update, rt.clock.now())
        return result[0] if result else None

    # -- deferred connector work (e.g. WhatsApp media downloads) --
    async def defer(self, kind: str, payload: dict[str, Any]) -> None:
        """Hand slow work a connector must not do inside a carrier's webhook to a durable
        job of ``kind`` (one of the connector's ``job_handlers``): a webhook already
        answered 2xx loses nothing if the process dies, nor if the connector is missing
        for a while (the job waits for a process that runs the kind)."""
        rt = self.rt
        now = rt.clock.now()
        job = Job(new_id("job"), kind, payload, now, rt.settings.job_max_attempts, created_at=now)
        await rt.store.enqueue(job)
        rt.wake_workers()

    # -- end of deferred connector work --
