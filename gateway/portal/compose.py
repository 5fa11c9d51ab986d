"""The composer: which channels a conversation offers, the live preview (encoding,
segments, units, the characters that force UCS-2, the quota left) and sending.

Every send goes through ``send`` → ``outbound.submit(rt, principal, request)``: the one
outbound path of the gateway, with the member as the principal. ``request`` is the typed
command ``SendRequest``, built by ``send_request`` in one place: the composer's form (or a
failed message's fields, for a retry) checked as the API checks a body
(``commands.convert``), so that a refusal reads as the API's. The live preview asks
``outbound.draft`` with the same command.

A double click (or a resubmitted page) must not send twice: every rendered composer
carries a fresh ``nonce``, and ``send`` claims it in the store's idempotency records
(scoped to the member) with the id of the message it will create, so a second submit of
the same form resumes the first under that id and ``outbound.submit`` writes nothing.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgspec

from gateway import outbound
from gateway.auth import Principal
from gateway.commands import FaxCover, SendRequest, convert
from gateway.errors import GatewayError, ValidationError, WindowClosed
from gateway.ids import new_id
from gateway.models import Channel, Conversation, Message, addon_allows
from gateway.portal import i18n
from gateway.portal.accounts import Viewer
from gateway.portal.settings import TemplateOffer
from gateway.portal.views import WindowView, window_of
from gateway.portal.web import Portal
from gateway.quota import period_of
from gateway.units import GSM7_BASIC, GSM7_EXTENSION, sms_info
from gateway.window import template_of

PORTAL_KEY = "portal"  # the principal's key id: sends made in the portal
# A composer's nonce is remembered this long: long enough for any double submit or a
# page resubmitted from the browser's history the same day.
NONCE_TTL = timedelta(hours=24)
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


def principal_of(viewer: Viewer) -> Principal:
    """The member as the outbound path's principal."""
    return Principal(viewer.team.id, viewer.member.id, PORTAL_KEY)


def channels_of(viewer: Viewer, conv: Conversation) -> list[str]:
    """The channels the member may use in this conversation (its own number's)."""
    member = viewer.member
    if conv.member_number == member.fax:
        candidates = [Channel.FAX]
    else:
        candidates = [Channel.WHATSAPP, Channel.SMS]
    return [c.value for c in candidates if addon_allows(member.addons, c)]


def ucs2_forcing(text: str) -> list[str]:
    """The characters of ``text`` that GSM-7 cannot carry (each one makes it UCS-2)."""
    seen: list[str] = []
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION and ch not in seen:
            seen.append(ch)
    return seen


def send_request(
    channel: str,
    sender: str,
    to: str,
    text: str | None = None,
    attachments: list[str] | None = None,
    template: TemplateOffer | Mapping[str, Any] | None = None,
    fallback: str | None = None,
) -> SendRequest:
    """The typed command of a portal send: an offered template, or a stored message's
    (``{name, language: {code}, components}``); refused as the API refuses a body."""
    body: dict[str, Any] = {"channel": channel, "from": sender, "to": to}
    if fallback is not None:
        body["fallback"] = fallback
    if text:
        body["text"] = text
    if attachments:
        body["attachments"] = list(attachments)
    if isinstance(template, TemplateOffer):
        body["template"] = {"name": template.name, "language": template.language}
    elif template is not None:
        body["template"] = dict(template)
    return convert(SendRequest, body)


def retry_request(msg: Message) -> SendRequest:
    """The command that sends a failed message again as it was asked for: its channel,
    numbers, text, files, WhatsApp template and SMS fallback, and a fax's cover page."""
    fallback = msg.fallback if msg.channel == Channel.WHATSAPP else None
    command = send_request(
        msg.channel, msg.from_, msg.to, msg.text, msg.attachments, template_of(msg.meta), fallback
    )
    section = msg.meta.get(outbound.COVER_META)
    cover = section.get("cover") if isinstance(section, dict) else None
    if isinstance(cover, dict):
        # Only callers inside the process may ask for a cover page (the API refuses the
        # field), so it is added to the checked command rather than to the form's dict.
        command = msgspec.structs.replace(command, cover=convert(FaxCover, cover))
    return command


def new_nonce() -> str:
    """A fresh nonce for one rendered composer form."""
    return secrets.token_urlsafe(16)


async def send(
    portal: Portal, viewer: Viewer, request: SendRequest, nonce: str | None = None
) -> outbound.Accepted:
    """Submit a portal send through the gateway's one outbound path, at most once per
    composer ``nonce`` (see the module docstring)."""
    message_id = None
    if nonce is not None:
        if not NONCE_PATTERN.fullmatch(nonce):
            raise ValidationError(i18n._("This form is out of date: reload the page."))
        rt = portal.rt
        message_id = new_id("msg")
        scope = f"portal-send:{viewer.member.id}"
        found = await rt.store.idem_claim(
            scope, nonce, "send", rt.clock.now(), NONCE_TTL, message_id
        )
        if found is not None and found.ref:
            message_id = found.ref  # the same form again: resume its first submit
    return await outbound.submit(portal.rt, principal_of(viewer), request, message_id=message_id)


@dataclass(slots=True)
class Preview:
    """What the composer shows while the member types."""

    channel: str
    chars: int
    encoding: str | None = None
    segments: int | None = None
    units: int | None = None
    ucs2: list[str] | None = None
    remaining: int | None = None
    included: int | None = None
    error: str | None = None
    sms_units: int | None = None  # what "Send as SMS" would cost


async def remaining_units(portal: Portal, viewer: Viewer, channel: str) -> tuple[int, int]:
    """(units left of this month's included, included) for the member on ``channel``."""
    rt = portal.rt
    period = period_of(rt.clock.now(), rt.settings.tz)
    lines, _ = await rt.store.ledger(viewer.team.id, period)
    used = sum(
        ln.used for ln in lines if ln.member_id == viewer.member.id and ln.channel == channel
    )
    included = rt.settings.tariff.included.get(channel, 0)
    return max(0, included - used), included


async def preview(
    portal: Portal, viewer: Viewer, conv: Conversation, channel: str, text: str
) -> Preview:
    """Encoding, segments and units of ``text`` on ``channel`` (the outbound path's own
    preview), the characters forcing UCS-2, and the quota left."""
    out = Preview(channel, len(text))
    tariff = portal.rt.settings.tariff
    if channel in (Channel.SMS, Channel.WHATSAPP):
        out.sms_units = tariff.units(Channel.SMS, text)
    if channel == Channel.SMS:
        info = sms_info(text)
        out.encoding, out.segments = info.encoding, info.segments
        out.ucs2 = ucs2_forcing(text) if info.encoding == "ucs2" else []
    if text.strip():
        try:
            d = await outbound.draft(
                portal.rt,
                principal_of(viewer),
                send_request(channel, conv.member_number, conv.remote_number, text),
            )
        except WindowClosed:
            # The composer says so already, and offers the SMS and templates.
            out.units = tariff.units(channel, text)
        except GatewayError as exc:
            out.error = exc.detail
            out.units = tariff.units(channel, text)
        else:
            view = d.preview()
            out.units, out.encoding = view["units"], view["encoding"]
            out.segments = view["segments"] if channel == Channel.SMS else None
    else:
        out.units = 0
    out.remaining, out.included = await remaining_units(portal, viewer, channel)
    return out


async def composer_context(
    portal: Portal,
    viewer: Viewer,
    conv: Conversation,
    wanted: str | None,
    error: GatewayError | None,
    text: str | None = None,
) -> dict[str, Any]:
    """Everything ``_composer.html`` shows."""
    channels = channels_of(viewer, conv)
    fresh = await portal.rt.store.get_conversation(conv.id) or conv
    window: WindowView = window_of(fresh.last_inbound_whatsapp_at, portal.rt.clock.now())
    draft = await portal.store.get_draft(viewer.member.id, conv.id)
    channel = wanted if wanted in channels else None
    if channel is None and draft is not None and draft.channel in channels:
        channel = draft.channel
    if channel is None:
        if Channel.WHATSAPP in channels and window.open:
            channel = Channel.WHATSAPP.value
        elif Channel.SMS in channels:
            channel = Channel.SMS.value
        elif channels:
            channel = channels[0]
    if text is None:
        text = draft.text if draft is not None else ""
    closed = channel == Channel.WHATSAPP and not window.open
    current = await preview(portal, viewer, conv, channel, text) if channel else None
    return {
        "conversation": conv,
        "channels": channels,
        "channel": channel,
        "window": window,
        "closed": closed,
        "sms_possible": Channel.SMS in channels
        or (Channel.WHATSAPP in channels and addon_allows(viewer.member.addons, Channel.SMS)),
        "text": text,
        "preview": current,
        "templates": portal.settings.templates,
        "error": error,
        "nonce": new_nonce(),
    }
