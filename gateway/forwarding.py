"""Forwarding of inbound SMS and WhatsApp messages: per-member rules and the forward jobs.

Each member may forward to up to ``commands.MAX_EMAIL`` addresses (free, through the ``[smtp]``
relay) and ``commands.MAX_SMS`` mobile numbers (an SMS from the member's own mobile number through
the normal outbound path, so units, segments, add-on, destination policy and credit limit
all apply: units x recipients). The rules are a settings document under
``forwarding:{member_id}``.

Durability: the forwards of an inbound message are jobs written in the SAME store
transaction as the message (``Store.store_inbound``), one job per (message, target), so
a crash right after the carrier got its 2xx loses nothing and one failing target neither
holds back nor repeats the others. A duplicate from the carrier writes nothing, so it
forwards nothing.

Sending twice:

* SMS: the forward's outbound message id is chosen when the job is written (it is in the
  payload), and the job looks it up before submitting: a job that runs again after its
  worker died once the message was accepted finds it and stops. The message, its charge
  and its send job are one transaction, so there is no state in between.
* Email: SMTP has no idempotency; the job is acknowledged right after the relay's 250.
  A worker dying exactly between the two repeats the mail, with the same ``Message-ID``
  (derived from message and address) so that mail clients show it once.

Refusals that waiting cannot cure (credit limit, add-on missing, the relay's 5xx, no
relay configured) are not retried: they are logged and recorded as a ``forward.failed``
event. Temporary SMTP trouble is retried with the outbound backoff until
``job_max_attempts``, then recorded the same way.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import mimetypes
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from gateway import mail, outbound
from gateway.auth import Principal
from gateway.commands import (
    FORWARDABLE,
    MAX_TEXT,
    UNSET,
    ForwardingRules,
    SendRequest,
    convert,
)
from gateway.errors import (
    Forbidden,
    GatewayError,
    NotFound,
    ValidationError,
)
from gateway.events import FORWARD_FAILED, FORWARD_SENT
from gateway.ids import new_id
from gateway.models import (
    Channel,
    Event,
    Job,
    JobHandler,
    Member,
    Message,
    Team,
    addon_allows,
    iso,
)
from gateway.numbers import normalize_mobile
from gateway.retry import Retry, backoff
from gateway.runtime import Runtime

log = logging.getLogger("gateway.forwarding")

JOB_KIND = "forward"
# A relay that is down: the forward is tried again after 5 s, 20 s, 80 s … at most an hour.
RETRY_FIRST, RETRY_FACTOR, RETRY_MAX = 5.0, 4.0, 3600.0
# Attachments of a forwarded WhatsApp message go into the mail up to this total size;
# the rest are named in the text with their API link (common relays refuse ~25 MB).
MAX_EMAIL_ATTACHMENTS = 10 * 1024 * 1024
# A forward of a forward (two members forwarding to each other) would loop for ever.
SMS_PREFIX = "Fwd"
TRUNCATED = "..."  # GSM 03.38, unlike "…", which would make the whole SMS UCS-2
_LABEL = {Channel.SMS.value: "SMS", Channel.WHATSAPP.value: "WhatsApp"}


def scope(member_id: str) -> str:
    """The settings scope of a member's forwarding rules."""
    return f"forwarding:{member_id}"


@dataclass(frozen=True, slots=True)
class Rules:
    """One member's forwarding rules; the default forwards nothing."""

    enabled: bool = True
    channels: tuple[str, ...] = FORWARDABLE
    email: tuple[str, ...] = ()
    sms: tuple[str, ...] = ()
    updated_at: str | None = None

    def applies_to(self, channel: str) -> bool:
        """Whether inbound messages on ``channel`` are forwarded at all."""
        return self.enabled and channel in self.channels and bool(self.email or self.sms)

    def to_doc(self) -> dict[str, Any]:
        """The stored settings document."""
        return {
            "enabled": self.enabled,
            "channels": list(self.channels),
            "email": list(self.email),
            "sms": list(self.sms),
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any] | None) -> Rules:
        """Rules from a stored document (None: the default)."""
        if not doc:
            return cls()
        return cls(
            bool(doc.get("enabled", True)),
            tuple(doc.get("channels", FORWARDABLE)),
            tuple(doc.get("email", ())),
            tuple(doc.get("sms", ())),
            doc.get("updated_at"),
        )

    def view(self, member_id: str) -> dict[str, Any]:
        """The rules as the API shows them."""
        return {"member_id": member_id, **self.to_doc()}


def validate(
    rules: ForwardingRules, team: Team, member: Member, *, smtp_configured: bool, now: datetime
) -> Rules:
    """The rules a ``PUT`` asks for (their shape checked by ``ForwardingRules``), checked
    against the member and the gateway, and normalized."""
    if rules.member_id is not UNSET and rules.member_id != member.id:
        raise ValidationError(
            "'member_id' does not match the member in the path", field="member_id"
        )
    channels: list[str] = []
    for i, channel in enumerate(rules.channels):
        if channel in channels:
            where = f"channels[{i}]"
            raise ValidationError(f"{where}: {channel} is listed twice", field=where)
        channels.append(channel)

    emails: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(rules.email):
        where = f"email[{i}]"
        try:
            address = mail.parse_address(raw)
        except ValueError as exc:
            raise ValidationError(f"{where}: {exc}", field=where) from None
        key = address.casefold()
        if key in seen:
            raise ValidationError(f"{where}: the same address as email[{seen[key]}]", field=where)
        seen[key] = i
        emails.append(address)
    if emails and not smtp_configured:
        raise ValidationError(
            "no SMTP relay configured ([smtp] in the gateway's configuration): email "
            "forwarding is unavailable",
            code="smtp_not_configured",
            field="email",
        )

    numbers: list[str] = []
    own = set(member.numbers())
    for i, raw in enumerate(rules.sms):
        where = f"sms[{i}]"
        try:
            number = normalize_mobile(raw, team.region)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc.detail}", code=exc.code, field=where) from None
        if number in own:
            raise ValidationError(f"{where}: {number} is the member's own number", field=where)
        if number in numbers:
            where_first = f"sms[{numbers.index(number)}]"
            raise ValidationError(f"{where}: the same number as {where_first}", field=where)
        numbers.append(number)
    if numbers and not addon_allows(member.addons, Channel.SMS):
        raise Forbidden(
            f"member {member.id} has not booked the sms add-on (needs: sms or whatsapp); "
            "SMS forwards would be refused",
            code="addon_missing",
        )
    return Rules(rules.enabled, tuple(channels), tuple(emails), tuple(numbers), iso(now))


# -- API ---------------------------------------------------------------------------------
async def _member(rt: Runtime, principal: Principal, member_id: str) -> Member:
    """The member whose rules ``principal`` asks for: 404 outside the team, 403 for a
    member key asking about another member."""
    member = await rt.store.get_member(member_id)
    if member is None or member.team_id != principal.team_id:
        raise NotFound("member not found")
    if not principal.sees_member(member.id):
        raise Forbidden("a member key may only use its own member's forwarding rules")
    return member


async def get_rules(rt: Runtime, principal: Principal, member_id: str) -> dict[str, Any]:
    """``GET /v1/members/{id}/forwarding``."""
    member = await _member(rt, principal, member_id)
    return Rules.from_doc(await rt.store.get_setting(scope(member.id))).view(member.id)


async def put_rules(
    rt: Runtime, principal: Principal, member_id: str, body: ForwardingRules | Any
) -> dict[str, Any]:
    """``PUT /v1/members/{id}/forwarding``: replace the rules after checking them.

    ``body`` is the command, or a parsed JSON body: checked (``commands.convert``) once
    the member is known, so an unknown member is a 404 before any refused rule.
    """
    member = await _member(rt, principal, member_id)
    team = await rt.directory.team(member.team_id)
    if team is None:
        raise NotFound("team not found")
    asked = body if isinstance(body, ForwardingRules) else convert(ForwardingRules, body)
    rules = validate(
        asked, team, member, smtp_configured=rt.settings.smtp is not None, now=rt.clock.now()
    )
    await rt.directory.put_setting(scope(member.id), rules.to_doc())
    return rules.view(member.id)


# -- inbound: which forwards ---------------------------------------------------------------
async def jobs_for(rt: Runtime, member: Member, message: Message) -> list[Job]:
    """The forward jobs of a new inbound message, to be stored with it (may be none)."""
    if message.channel not in FORWARDABLE:
        return []
    rules = Rules.from_doc(await rt.directory.setting(scope(member.id)))
    if not rules.applies_to(message.channel):
        return []
    now = rt.clock.now()
    targets: list[tuple[str, str]] = [("email", a) for a in rules.email]
    numbers = [n for n in rules.sms if n != message.from_]  # never back to the sender
    if numbers and await _is_forward_from_gateway(rt, message):
        log.info("inbound %s is a forward from a gateway number; not forwarded by SMS", message.id)
        numbers = []
    targets += [("sms", n) for n in numbers]
    jobs = []
    for via, to in targets:
        payload: dict[str, Any] = {"message_id": message.id, "via": via, "to": to}
        if via == "sms":
            payload["forward_id"] = new_id("msg")  # fixed now: a re-run finds its message
        jobs.append(
            Job(new_id("job"), JOB_KIND, payload, now, rt.settings.job_max_attempts, created_at=now)
        )
    return jobs


async def _is_forward_from_gateway(rt: Runtime, message: Message) -> bool:
    """Whether ``message`` is itself an SMS forward sent by one of our members."""
    text = message.text or ""
    if not text.startswith(f"{SMS_PREFIX} "):
        return False
    return await rt.directory.member_by_number(message.from_) is not None


# -- the forward job ---------------------------------------------------------------------
@dataclass(slots=True)
class _Outcome:
    message: Message
    via: str
    to: str

    def data(self, **more: Any) -> dict[str, Any]:
        return {
            "message_id": self.message.id,
            "member_id": self.message.member_id,
            "channel": self.message.channel,
            "via": self.via,
            "to": self.to,
            **more,
        }


async def _record(rt: Runtime, outcome: _Outcome, kind: str, **data: Any) -> None:
    event = Event(
        new_id("evt"), kind, outcome.message.team_id, outcome.data(**data), rt.clock.now()
    )
    await rt.store.append_events([event])
    ok = "sent" if kind == FORWARD_SENT else "failed"
    rt.metrics.describe("gateway_forwards_total", "counter", "Forwards by way and outcome.")
    rt.metrics.inc("gateway_forwards_total", via=outcome.via, outcome=ok)


async def _failed(rt: Runtime, outcome: _Outcome, code: str, reason: str, **data: Any) -> None:
    log.warning(
        "forward of %s by %s to %s failed (%s): %s",
        outcome.message.id,
        outcome.via,
        outcome.to,
        code,
        reason,
    )
    await _record(rt, outcome, FORWARD_FAILED, code=code, reason=reason, **data)


def job_handlers(rt: Runtime) -> dict[str, JobHandler]:
    """The ``forward`` job kind bound to ``rt``."""
    return {JOB_KIND: functools.partial(forward_job, rt)}


async def forward_job(rt: Runtime, job: Job) -> None:
    """Forward one inbound message to one target (an address or a number)."""
    p = job.payload
    msg = await rt.store.get_message(str(p["message_id"]))
    if msg is None:
        log.warning("forward job %s: message %s is gone", job.id, p["message_id"])
        return
    outcome = _Outcome(msg, str(p["via"]), str(p["to"]))
    if outcome.via == "email":
        await _forward_email(rt, job, outcome)
    elif outcome.via == "sms":
        await _forward_sms(rt, outcome, str(p["forward_id"]))
    else:
        await _failed(rt, outcome, "unknown_target", f"no way to forward by {outcome.via!r}")


# -- by SMS --------------------------------------------------------------------------------
def sms_text(message: Message, attachment_types: list[str]) -> str:
    """``Fwd +4917…: <text>``, cut to what one outbound SMS may carry."""
    label = SMS_PREFIX if message.channel == Channel.SMS else f"{SMS_PREFIX} WhatsApp"
    parts = [message.text] if message.text else []
    parts += [f"[{ct}]" for ct in attachment_types]
    text = f"{label} {message.from_}: " + " ".join(parts)
    limit = MAX_TEXT[Channel.SMS]
    if len(text) > limit:
        text = text[: limit - len(TRUNCATED)] + TRUNCATED
    return text


async def _forward_sms(rt: Runtime, outcome: _Outcome, forward_id: str) -> None:
    earlier = await rt.store.get_message(forward_id)
    if earlier is not None:
        # Accepted by an earlier run whose worker died before the ack (and maybe before
        # its event): say so again rather than risk saying nothing.
        await _record(rt, outcome, FORWARD_SENT, forward_message_id=earlier.id, units=earlier.units)
        return
    msg = outcome.message
    member = await rt.store.get_member(msg.member_id)
    if member is None or member.mobile is None:
        await _failed(rt, outcome, "no_sender", "the member has no mobile number to send from")
        return
    types = []
    for att_id in msg.attachments:
        att = await rt.store.get_attachment(att_id)
        types.append(att.content_type if att else "attachment")
    request = SendRequest(
        channel=Channel.SMS, from_=member.mobile, to=outcome.to, text=sms_text(msg, types)
    )
    principal = Principal(msg.team_id, member.id, "forwarding")
    try:
        accepted = await outbound.submit(rt, principal, request, message_id=forward_id)
    except GatewayError as exc:
        # Credit limit, add-on, destination policy, no connector: a retry would be refused
        # the same way (and a forward held back for hours is worth less than a record).
        extra = {k: v for k, v in exc.extra.items() if k != "field"}
        await _failed(rt, outcome, exc.code, exc.detail, **extra)
        return
    await _record(
        rt,
        outcome,
        FORWARD_SENT,
        forward_message_id=accepted.message.id,
        units=accepted.message.units,
    )


# -- by email ------------------------------------------------------------------------------
def _header(text: str) -> str:
    return " ".join(text.split())  # no CR/LF from a member's name into a header


def _domain(address: str) -> str:
    domain = address.rpartition("@")[2].strip(" >")
    return domain or "gateway.invalid"


async def compose_email(
    rt: Runtime, message: Message, member: Member | None, to: str, sender: str
) -> EmailMessage:
    """The mail that forwards ``message`` to ``to``: text, time, channel, attachments."""
    label = _LABEL.get(message.channel, message.channel)
    who = f"{member.name} ({message.to})" if member else message.to
    subject = f"{label} from {message.from_} to {who}"
    local = message.created_at.astimezone(rt.settings.tz)
    lines = [
        subject,
        f"Received: {local:%Y-%m-%d %H:%M:%S %Z} ({rt.settings.timezone})",
        f"Channel: {label}",
        "",
        message.text if message.text else "(no text)",
    ]
    email = EmailMessage()
    budget = MAX_EMAIL_ATTACHMENTS
    attached, skipped = [], []
    for att_id in message.attachments:
        att = await rt.store.get_attachment(att_id)
        if att is None:
            continue
        name = att.filename or f"{att.id}{mimetypes.guess_extension(att.content_type) or ''}"
        link = f"{rt.settings.public_url.rstrip('/')}/v1/attachments/{att.id}/content"
        if att.size > budget:
            skipped.append(f"- {name} ({att.content_type}, {att.size} bytes): too large; {link}")
            continue
        try:
            data = rt.blobs.get(att.sha256)
        except FileNotFoundError:
            skipped.append(f"- {name} ({att.content_type}): not stored; {link}")
            continue
        budget -= att.size
        attached.append((data, att.content_type, name))
    if skipped:
        lines += ["", "Not attached:", *skipped]
    lines += [
        "",
        "-- ",
        f"Forwarded by the messaging gateway under the forwarding rules of "
        f"{member.name if member else message.member_id} (message {message.id}).",
    ]
    email["From"] = sender
    email["To"] = to
    email["Subject"] = _header(subject)
    email["Date"] = format_datetime(rt.clock.now())
    digest = hashlib.sha256(f"{message.id}\n{to}".encode()).hexdigest()[:16]
    email["Message-ID"] = f"<{message.id}.{digest}@{_domain(sender)}>"
    # RFC 3834: no auto-replies (vacation notices) back to the gateway.
    email["Auto-Submitted"] = "auto-forwarded"
    email["X-Gateway-Message-Id"] = message.id
    email.set_content("\n".join(lines) + "\n")
    for data, content_type, name in attached:
        maintype, _, subtype = content_type.partition("/")
        if not subtype:
            maintype, subtype = "application", "octet-stream"
        email.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return email


async def _forward_email(rt: Runtime, job: Job, outcome: _Outcome) -> None:
    smtp = rt.settings.smtp
    if smtp is None:
        await _failed(
            rt, outcome, "smtp_not_configured", "no SMTP relay configured ([smtp]); not sent"
        )
        return
    msg = outcome.message
    member = await rt.directory.member(msg.member_id)
    email = await compose_email(rt, msg, member, outcome.to, smtp.sender)
    try:
        delivery = await mail.send_mail(smtp, email)
    except mail.TemporaryMailError as exc:
        if job.attempts >= job.max_attempts:
            await _failed(
                rt,
                outcome,
                "smtp_unavailable",
                f"gave up after {job.attempts} attempts: {exc.message}",
                smtp_code=exc.smtp_code,
            )
            return
        log.info("forward %s to %s: %s; will retry", msg.id, outcome.to, exc.message)
        delay = backoff(job.attempts, base=RETRY_FIRST, cap=RETRY_MAX, factor=RETRY_FACTOR)
        raise Retry(rt.clock.now() + timedelta(seconds=delay), exc.message) from exc
    except mail.PermanentMailError as exc:
        await _failed(rt, outcome, "smtp_rejected", exc.message, smtp_code=exc.smtp_code)
        return
    await _record(rt, outcome, FORWARD_SENT, smtp_response=delivery.response)
