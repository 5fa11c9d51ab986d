"""The WhatsApp 24-hour customer service window, and the SMS fallback when it is closed.

Meta lets a business send free-form WhatsApp messages to a contact only within 24 hours
of the contact's last message to that business number; outside the window only approved
templates go out (a free-form message fails with error 131047). Status webhooks no
longer carry the window (Graph v24), so the gateway tracks it itself, per conversation
(= business number and contact): the store keeps the timestamp of the latest inbound
WhatsApp message — Meta's own ``timestamp``, not the arrival time — and a late or
repeated webhook never moves it back (``Store.store_inbound``).

A free-form send outside the window is refused before Meta is called
(``whatsapp_window_closed``), unless the request says ``"fallback": "sms"``: then it goes
out as an SMS (SMS add-on, SMS units and segments, an SMS connector). When WhatsApp
refuses a message for the window all the same — Meta answers 131047 at once, or later
in a ``failed`` status webhook, or the window closed while the message waited in the
queue — a message with that fallback is moved to SMS by ``fallback_to_sms``: its
WhatsApp units go back and the SMS units are charged in ONE store step
(``Store.reroute_message``), so nothing is charged twice or lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from connectors.base import ErrorCode
from gateway import jsoncodec
from gateway.commands.send import COMPONENT_TYPES, COMPONENTS_REFUSAL, MAX_TEXT, WhatsAppTemplate
from gateway.errors import CreditLimitExceeded, ValidationError, WindowClosed
from gateway.ids import new_id
from gateway.models import (
    Channel,
    Conversation,
    Job,
    Member,
    Message,
    Status,
    addon_allows,
    iso,
)
from gateway.quota import build_charge, period_of
from gateway.store.base import Reroute, StatusUpdate
from gateway.units import sms_info

if TYPE_CHECKING:
    from gateway.extensions import Host
    from gateway.runtime import Runtime

WINDOW = timedelta(hours=24)
FALLBACK_SMS = "sms"
# Where an outbound message carries its WhatsApp template (read by the connector).
TEMPLATE_META = "whatsapp"


@dataclass(slots=True, frozen=True)
class Window:
    """The window of one conversation at one moment."""

    last_inbound_at: datetime | None  # the contact's latest WhatsApp message
    expires_at: datetime | None  # None: the contact never wrote on WhatsApp
    open: bool

    def view(self) -> dict[str, Any]:
        """``{"open", "expires_at"}`` as the API shows it (a past ``expires_at`` = closed then)."""
        return {
            "open": self.open,
            "expires_at": None if self.expires_at is None else iso(self.expires_at),
        }


def window_at(last_inbound_at: datetime | None, now: datetime) -> Window:
    """The window opened by a contact's message at ``last_inbound_at``, seen at ``now``:
    open while ``now`` is before ``last_inbound_at`` + 24 h."""
    if last_inbound_at is None:
        return Window(None, None, False)
    expires = last_inbound_at + WINDOW
    return Window(last_inbound_at, expires, now < expires)


def of_conversation(conversation: Conversation | None, now: datetime) -> Window:
    """The window of ``conversation`` (closed when there is none yet)."""
    last = conversation.last_inbound_whatsapp_at if conversation is not None else None
    return window_at(last, now)


async def current(rt: Host, team_id: str, member_number: str, remote_number: str) -> Window:
    """The window between a member's number and a contact, as stored right now.

    Read from the store on every call (the directory caches a conversation's identity,
    not its times), and without creating a conversation.
    """
    conversation = await rt.store.find_conversation(team_id, member_number, remote_number)
    return of_conversation(conversation, rt.clock.now())


def sms_sender(rt: Host, member: Member) -> tuple[str | None, str | None]:
    """The number an SMS fallback of ``member`` goes from (their mobile number, whatever
    number carries their WhatsApp), or None and why there is no SMS fallback."""
    if member.mobile is None:
        return None, f"member {member.id} has no mobile number to send an SMS from"
    if rt.route(Channel.SMS, member.mobile) is None:
        return None, f"no connector serves sms from {member.mobile}"
    return member.mobile, None


def closed_error(window: Window, sender: str, to: str, no_sms: str | None) -> WindowClosed:
    """The ``whatsapp_window_closed`` problem for a free-form send from ``sender`` to ``to``;
    ``no_sms``: why there is no SMS fallback (None: there is one)."""
    if window.expires_at is None:
        why = f"{to} has not written to {sender} on WhatsApp, so no 24-hour window is open"
    else:
        why = f"the 24-hour WhatsApp window with {to} closed at {iso(window.expires_at)}"
    if no_sms is None:
        how = 'send a template, or repeat with "fallback": "sms" to send it by SMS'
    else:
        how = f"send a template ({no_sms}, so no SMS fallback)"
    extra: dict[str, Any] = {"whatsapp_window": window.view()}
    if no_sms is None:
        extra["fallback"] = FALLBACK_SMS
    return WindowClosed(f"{why}; {how}", **extra)


def template_of(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The WhatsApp template an outbound message's ``meta`` carries, if any."""
    section = meta.get(TEMPLATE_META)
    template = section.get("template") if isinstance(section, dict) else None
    return template if isinstance(template, dict) else None


def needs_window(msg: Message) -> bool:
    """Whether ``msg`` is a free-form WhatsApp message (templates go out any time)."""
    return msg.channel == Channel.WHATSAPP and template_of(msg.meta) is None


def falls_back(msg: Message) -> bool:
    """Whether ``msg`` asked to go by SMS when WhatsApp refuses it for the window."""
    return msg.channel == Channel.WHATSAPP and msg.fallback == FALLBACK_SMS


async def closed_before_send(rt: Runtime, msg: Message) -> dict[str, Any] | None:
    """The error of a free-form WhatsApp message whose window closed while it waited in
    the queue (Meta would refuse it with 131047), or None when it may go."""
    if not needs_window(msg):
        return None
    window = await current(rt, msg.team_id, msg.from_, msg.to)
    if window.open:
        return None
    when = "was never open" if window.expires_at is None else f"closed at {iso(window.expires_at)}"
    return {
        "code": ErrorCode.WINDOW_CLOSED,
        "message": f"the 24-hour WhatsApp window with {msg.to} {when}; not handed to WhatsApp",
        "carrier_code": None,
        "retryable": False,
    }


class Fallback(NamedTuple):
    """What ``fallback_to_sms`` did: the message after it, and whether it is now an SMS."""

    message: Message
    rerouted: bool


async def fallback_to_sms(
    rt: Runtime, msg: Message, error: Mapping[str, Any], *, requeue: bool
) -> Fallback:
    """Move ``msg`` (WhatsApp with ``fallback: sms``, refused for the window with
    ``error``) to SMS: its units back, the SMS units charged, queued again — or, when the
    SMS cannot go (credit limit, no SMS connector, no text), fail it saying why.

    ``requeue`` enqueues a new send job with the move (a status report triggered it);
    without it the caller's running send job sends the SMS itself.
    """
    now = rt.clock.now()
    problem: tuple[str, str]
    team = await rt.directory.team(msg.team_id)
    member = await rt.directory.member(msg.member_id)
    sender, no_sms = sms_sender(rt, member) if member is not None else (None, None)
    connector = rt.route(Channel.SMS, sender) if sender else None
    if not msg.text:
        problem = ("validation_error", "the message has no text to send by SMS")
    elif team is None or member is None:
        problem = ("not_found", "the message's team or member no longer exists")
    elif connector is None:  # first: without a mobile number the add-on cannot help
        problem = ("channel_unavailable", no_sms or "no connector serves sms")
    elif not addon_allows(member.addons, Channel.SMS):
        problem = ("addon_missing", f"member {member.id} has not booked the sms add-on")
    else:
        tariff = rt.settings.tariff
        units = tariff.units(Channel.SMS, msg.text)
        info = sms_info(msg.text)
        charge = build_charge(
            tariff, team, member, Channel.SMS, units, period_of(now, rt.settings.tz)
        )
        reason = str(error.get("code") or ErrorCode.WINDOW_CLOSED)
        reroute = Reroute(
            from_channel=Channel.WHATSAPP.value,
            channel=Channel.SMS.value,
            connector_id=connector.id,
            units=units,
            segments=info.segments,
            encoding=info.encoding,
            meta={"fallback_used": {"from": "whatsapp", "to": "sms", "reason": reason}},
            detail={"fallback": FALLBACK_SMS, "error": dict(error)},
            sender=sender if sender != msg.from_ else None,
        )
        job = None
        if requeue:
            job = Job(
                new_id("job"),
                "send",
                {"message_id": msg.id},
                now,
                rt.settings.job_max_attempts,
                created_at=now,
            )
        try:
            result = await rt.store.reroute_message(msg.id, reroute, charge, job, now)
        except CreditLimitExceeded as exc:
            problem = (exc.code, exc.detail)
        else:
            if result is None:  # deleted meanwhile: nothing left to do
                return Fallback(msg, False)
            moved, changed = result
            if changed:
                rt.metrics.inc("gateway_fallbacks_total", channel="sms", reason=reason)
                if requeue:
                    rt.wake_workers()
            # Not changed: another trigger (the same refusal reported twice) moved it first.
            return Fallback(moved, changed)
    failure = {
        **error,
        "message": f"{error.get('message') or 'WhatsApp refused the message'}; "
        f"the SMS fallback was not possible: {problem[1]}",
        "fallback_error": {"code": problem[0], "message": problem[1]},
    }
    # Units go back when WhatsApp never accepted the message (the rule of every failure).
    update = StatusUpdate(status=Status.FAILED, error=failure, release=msg.carrier_id is None)
    result = await rt.store.update_message(msg.id, update, now)
    return Fallback(result[0] if result else msg, False)


# -- the request side: templates, and what a fallback must be able to carry -------------------
MAX_TEMPLATE_JSON = 16_000  # bytes of the components: far above any real template
SMS_MAX_TEXT = MAX_TEXT[Channel.SMS]  # the text an SMS fallback can carry


def parse_template(template: WhatsAppTemplate | None, channel: Channel) -> dict[str, Any] | None:
    """The request's ``template`` in the shape Meta takes (``{name, language: {code},
    components}``), or None; refuses what its shape (``SendRequest``) cannot say."""
    if template is None:
        return None
    if channel != Channel.WHATSAPP:
        raise ValidationError("'template' is only for channel whatsapp", field="template")
    components = template.components or []
    if not all(c.get("type") in COMPONENT_TYPES for c in components):
        raise ValidationError(COMPONENTS_REFUSAL, field="template")
    try:
        size = len(jsoncodec.dumps(components))
    except TypeError:  # integers beyond 64 bits: floats, as the API's JSON parser reads them
        components = jsoncodec.loads(msgspec.json.encode(components))
        size = len(jsoncodec.dumps(components))
    if size > MAX_TEMPLATE_JSON:
        raise ValidationError(
            f"'template.components' is larger than {MAX_TEMPLATE_JSON} bytes", field="template"
        )
    return {
        "name": template.name,
        "language": {"code": template.language_code},
        "components": components,
    }


def check_request(
    text: str | None, attachments: list[Any], fallback: str | None, template: object
) -> None:
    """Refuse what a template or an SMS fallback cannot carry, whatever the window."""
    if template is not None:
        if text:
            raise ValidationError(
                "'text' cannot go with 'template': a template message takes its text from "
                "the approved template (parameters go in its components)",
                field="text",
            )
        if attachments:
            raise ValidationError(
                "'attachments' cannot go with 'template': header media goes in the "
                "template's components",
                field="attachments",
            )
        if fallback is not None:
            raise ValidationError(
                "a template needs no 'fallback': it may be sent outside the 24-hour window",
                field="fallback",
            )
    if fallback is None:
        return
    # The fallback may happen after acceptance (Meta refuses, the window closes while the
    # message waits), so the message must fit an SMS from the start.
    if attachments:
        raise ValidationError(
            '"fallback": "sms" needs a text-only message: an SMS cannot carry attachments',
            field="fallback",
        )
    if text is not None and len(text) > SMS_MAX_TEXT:
        raise ValidationError(
            f"'text' is longer than the {SMS_MAX_TEXT} characters an SMS fallback can carry",
            field="text",
        )


def request_meta(template: dict[str, Any] | None, fell_back: bool) -> dict[str, Any]:
    """The ``meta`` an accepted message starts with: its template, the fallback used."""
    meta: dict[str, Any] = {}
    if template is not None:
        meta[TEMPLATE_META] = {"template": template}
    if fell_back:
        meta["fallback_used"] = {"from": "whatsapp", "to": "sms", "reason": WindowClosed.code}
    return meta
