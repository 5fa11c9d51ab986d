"""The one outbound path (API, portal, email-to-fax, forwarding): a ``SendRequest`` →
authorize → units → submit.

Public: front doors outside the core (the fax package's email-to-fax) submit through it
(they pass the host they were given, which is the process's runtime).

The request's shape is checked where it is made (``gateway.commands``: the API decodes
bodies into it, other callers build it with keywords). ``draft`` does every other check
that needs no write and computes units and segments (it is also the preview); ``submit``
then writes the message, charges the ledger, enqueues the
send job (or the channel's preparation job, ``services.ChannelJobs``) and appends the
event in ONE store transaction. The team's outbound policy
(``policy.py``) screens the destination in ``draft``; its send limits are taken in that
transaction, so only accepted sends count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from connectors.base import Connector
from gateway import events, window
from gateway.auth import Principal
from gateway.commands import MAX_ATTACHMENTS, MAX_TEXT, FaxCover, SendRequest
from gateway.errors import ChannelUnavailable, NotFound, ValidationError
from gateway.extensions import Host, preparation_kind
from gateway.ids import new_id
from gateway.models import (
    Attachment,
    Channel,
    Direction,
    Event,
    Job,
    Member,
    Message,
    Status,
    Team,
    outbound_extras,
)
from gateway.numbers import normalize
from gateway.policy import effective_policy, require_addon, screen, send_limits, sender_member
from gateway.quota import build_charge, period_of
from gateway.store.base import Limit, MessageExists
from gateway.units import sms_info

# The message meta section of a fax's cover page (``SendRequest.cover``).
COVER_META = "fax"


@dataclass(slots=True)
class Draft:
    """A checked outbound message, ready to be stored (or shown as a preview)."""

    team: Team
    channel: Channel
    sender: str
    to: str
    text: str | None
    attachments: list[Attachment]
    fallback: str | None
    member: Member
    connector: Connector
    units: int
    segments: int
    encoding: str | None
    limits: tuple[Limit, ...] = ()  # the policy's send limits, taken by submit only
    # WhatsApp (gateway/window.py): the window as checked, and the message's first meta
    # (its template; the SMS fallback taken because the window is closed).
    whatsapp_window: window.Window | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def preview(self) -> dict[str, Any]:
        """What ``POST /v1/messages/preview`` answers."""
        out: dict[str, Any] = {
            "channel": self.channel.value,
            "encoding": self.encoding,
            "segments": self.segments,
            "units": self.units,
        }
        if self.meta:
            out.update(outbound_extras(self.meta))
        if self.whatsapp_window is not None:
            out["whatsapp_window"] = self.whatsapp_window.view()
        return out


async def draft(rt: Host, principal: Principal, request: SendRequest) -> Draft:
    """Check an outbound request and compute its units; writes nothing."""
    channel = request.channel
    team = await rt.directory.team(principal.team_id)
    if team is None:  # the key outlived its team
        raise NotFound("team not found")
    sender = normalize(request.from_, team.region)
    to = normalize(request.to, team.region)
    text = request.text
    attachment_ids = request.attachments or []
    fallback = request.fallback
    if fallback is not None and channel != Channel.WHATSAPP:
        raise ValidationError("'fallback' can only be \"sms\", on WhatsApp", field="fallback")
    template = window.parse_template(request.template, channel)
    window.check_request(text, attachment_ids, fallback, template)
    cover = request.cover if isinstance(request.cover, FaxCover) else None
    if cover is not None and channel != Channel.FAX:
        raise ValidationError("'cover' is only for channel fax", field="cover")
    if text is not None and len(text) > MAX_TEXT[channel]:
        raise ValidationError(
            f"'text' is longer than {MAX_TEXT[channel]} characters for {channel.value}",
            field="text",
        )
    if len(attachment_ids) > MAX_ATTACHMENTS[channel]:
        raise ValidationError(
            f"{channel.value} takes at most {MAX_ATTACHMENTS[channel]} attachment(s)",
            field="attachments",
        )
    if not text and not attachment_ids and template is None and cover is None:
        raise ValidationError(
            "a message needs 'text' or 'attachments' (or, on whatsapp, 'template')", field="text"
        )
    if sender == to:
        raise ValidationError("'from' and 'to' are the same number", field="to")

    member = await sender_member(rt.directory, team.id, principal.member_id, channel, sender)
    require_addon(member, channel)
    policy = await effective_policy(rt, team)
    screen(policy, channel, to, fallback)
    attachments = []
    for att_id in attachment_ids:
        att = await rt.store.get_attachment(att_id)
        if att is None or not att.visible_to(team.id, principal.member_id):
            raise ValidationError(f"attachment {att_id!r} not found", field="attachments")
        attachments.append(att)
    # -- the WhatsApp window (gateway/window.py): free-form needs it open, or goes by SMS --
    whatsapp_window, fell_back = None, False
    if channel == Channel.WHATSAPP:
        whatsapp_window = await window.current(rt, team.id, sender, to)
        if template is None and not whatsapp_window.open:
            # The fallback SMS goes from the member's mobile number, which need not be the
            # number that carries their WhatsApp (that may be a landline).
            sms_from, no_sms = window.sms_sender(rt, member)
            if fallback is None:
                raise window.closed_error(whatsapp_window, sender, to, no_sms)
            if sms_from is None:
                raise ChannelUnavailable(
                    f"the WhatsApp window with {to} is closed and {no_sms}, so there is no "
                    "SMS fallback; nothing was queued"
                )
            require_addon(member, Channel.SMS)
            channel, sender, fell_back = Channel.SMS, sms_from, True
    # -- end of the WhatsApp window --
    connector = rt.route(channel, sender)
    if connector is None:
        raise ChannelUnavailable(
            f"no connector serves {channel.value} from {sender}; nothing was queued"
        )
    segments, encoding = 1, None
    if channel == Channel.SMS:
        info = sms_info(text or "")
        segments, encoding = info.segments, info.encoding
    units = rt.settings.tariff.units(channel, text)
    meta = window.request_meta(template, fell_back)
    if cover is not None:  # rendered by the fax channel's conversion job
        meta[COVER_META] = {"cover": msgspec.to_builtins(cover)}
    return Draft(
        team,
        channel,
        sender,
        to,
        text,
        attachments,
        fallback,
        member,
        connector,
        units,
        segments,
        encoding,
        send_limits(policy, team.id, member.id, to),
        whatsapp_window=whatsapp_window,
        meta=meta,
    )


class Accepted(NamedTuple):
    """An accepted message and its public view (built once for the event and the reply)."""

    message: Message
    view: dict[str, Any]


async def submit(
    rt: Host, principal: Principal, request: SendRequest, *, message_id: str | None = None
) -> Accepted:
    """Accept an outbound message: stored, charged, queued and announced atomically.

    ``message_id`` is for callers that must not send twice: they choose the id before
    submitting (a forward job, an API send with an ``Idempotency-Key``), so a submit
    repeated after a crash finds the message its first run stored and answers that one,
    writing nothing (no second charge, no second send job).
    """
    d = await draft(rt, principal, request)
    now = rt.clock.now()
    team = d.team
    conversation = await rt.directory.conversation(team.id, d.member.id, d.sender, d.to, now)
    message = Message(
        id=message_id or new_id("msg"),
        team_id=team.id,
        member_id=d.member.id,
        conversation_id=conversation.id,
        channel=d.channel.value,
        direction=Direction.OUTBOUND.value,
        from_=d.sender,
        to=d.to,
        text=d.text,
        attachments=[a.id for a in d.attachments],
        status=Status.ACCEPTED.value,
        units=d.units,
        segments=d.segments,
        encoding=d.encoding,
        created_at=now,
        updated_at=now,
        connector_id=d.connector.id,
        fallback=d.fallback,
        meta=dict(d.meta),
    )
    charge = build_charge(
        rt.settings.tariff, team, d.member, d.channel, d.units, period_of(now, rt.settings.tz)
    )
    # A channel whose extension prepares its messages first (the fax channel converts
    # documents) gets that job instead of ``send``; the preparation enqueues the send.
    job = Job(
        new_id("job"),
        preparation_kind(rt, d.channel.value) or "send",
        {"message_id": message.id},
        now,
        rt.settings.job_max_attempts,
        created_at=now,
    )
    view = message.public()
    created = Event(new_id("evt"), events.MESSAGE_CREATED, team.id, view, now)
    try:
        await rt.store.submit_outbound(message, charge, job, [created], d.limits)
    except MessageExists:
        stored = await rt.store.get_message(message.id)
        if stored is None:  # cannot happen: stored messages are never deleted
            raise
        return Accepted(stored, stored.public())
    rt.metrics.add("gateway_messages_accepted_total", (("channel", d.channel.value),))
    rt.wake_workers()
    return Accepted(message, view)
