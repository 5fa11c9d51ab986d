"""Mail the fax channel sends through the ``[smtp]`` relay (``gateway.mail``).

* Fax-to-email: a received fax as a PDF to the member and the addresses of their
  forwarding rules (one mail; the forwarding addresses as Bcc), with the caller's number,
  the remote station id (CSI), the pages and the time in subject and body.
* Status mails to the sender of an email-to-fax: accepted (pages), not sent yet (the
  reason in words and the next try, after each attempt that failed for now), sent (the
  transmission report, page 1 inline, the PDF attached), failed (the reason in words).

Every mail is sent from a job: a relay that cannot take it now (``TemporaryMailError``)
means the job runs again later (``Retry``), up to the job's attempts; a refusal for good
is logged. The ``Message-ID`` is derived from what the mail is about, so a mail repeated
after a crash between the relay's 250 and the job's ack shows once in mail clients.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from html import escape
from typing import Any

from gateway import mail
from gateway.extensions import Host
from gateway.models import Job, Message, parse_iso
from gateway.retry import Retry, backoff

log = logging.getLogger("fax.mail")

RETRY_FIRST, RETRY_FACTOR, RETRY_MAX = 5.0, 4.0, 3600.0
FORWARDING_SCOPE = "forwarding:{}"  # gateway.forwarding.scope: the member's rules


def _message_id(key: str, sender: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    domain = sender.rpartition("@")[2].strip(" >") or "gateway.invalid"
    return f"<{digest}@{domain}>"


def _when(host: Host, msg: Message) -> str:
    local = msg.created_at.astimezone(host.settings.tz)
    return f"{local:%Y-%m-%d %H:%M} ({host.settings.timezone})"


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _pages(n: object) -> str:
    return "1 page" if n == 1 else f"{n} pages"


async def deliver(host: Host, job: Job, email: EmailMessage, what: str) -> bool:
    """Send ``email`` through the relay: True when it went; ``Retry`` while the relay
    cannot take it (until the job's last attempt); False when it was refused for good or
    no relay is configured (logged)."""
    smtp = host.settings.smtp
    if smtp is None:
        log.warning("%s: no [smtp] relay configured; not mailed", what)
        return False
    if "From" not in email:
        email["From"] = smtp.sender
    if "Message-ID" not in email:
        email["Message-ID"] = make_msgid(domain=smtp.sender.rpartition("@")[2] or None)
    try:
        delivery = await mail.send_mail(smtp, email)
    except mail.TemporaryMailError as exc:
        if job.attempts >= job.max_attempts:
            log.error("%s: gave up after %d attempts: %s", what, job.attempts, exc.message)
            return False
        delay = backoff(job.attempts, base=RETRY_FIRST, cap=RETRY_MAX, factor=RETRY_FACTOR)
        log.info("%s: %s; will retry", what, exc.message)
        raise Retry(host.clock.now() + timedelta(seconds=delay), exc.message) from exc
    except mail.PermanentMailError as exc:
        log.error("%s: refused by the relay: %s", what, exc.message)
        return False
    for rcpt, (code, text) in delivery.refused.items():
        log.warning("%s: the relay refused %s: %s %s", what, rcpt, code, text)
    return True


async def forwarding_addresses(host: Host, member_id: str) -> list[str]:
    """The email addresses of a member's forwarding rules (none when disabled)."""
    doc = await host.store.get_setting(FORWARDING_SCOPE.format(member_id)) or {}
    if not doc.get("enabled", True):
        return []
    return [str(a) for a in doc.get("email", ())]


def received_email(
    host: Host, msg: Message, section: dict[str, Any], pdf: bytes, png: bytes, sender: str
) -> EmailMessage:
    """The mail of a received fax (``To``/``Bcc`` set by the caller)."""
    report = _dict(section.get("report"))
    csi = str(report.get("remote_csi") or "").strip()
    pages = section.get("pages") or report.get("pages") or "?"
    when = _when(host, msg)
    caller = msg.from_ + (f" ({csi})" if csi else "")
    subject = f"Fax from {caller}, {_pages(pages)}, {when}"
    lines = [
        f"A fax to {msg.to} arrived.",
        "",
        f"From: {msg.from_}",
        f"Remote station (CSI): {csi or 'not given'}",
        f"Pages: {pages}",
        f"Received: {when}",
    ]
    for key, label in (("bit_rate", "Bit rate"), ("resolution", "Resolution"),
                       ("result", "Result")):  # fmt: skip
        if report.get(key) is not None:
            lines.append(f"{label}: {report[key]}")
    lines += ["", "The fax is attached as a PDF.", "", "-- ", f"Message {msg.id}"]
    email = EmailMessage()
    email["From"] = sender
    email["Subject"] = subject
    email["Date"] = format_datetime(host.clock.now())
    email["Message-ID"] = _message_id(f"received:{msg.id}", sender)
    email["Auto-Submitted"] = "auto-generated"
    email["X-Gateway-Message-Id"] = msg.id
    email.set_content("\n".join(lines) + "\n")
    email.add_attachment(png, maintype="image", subtype="png", filename="page-1.png")
    stamp = msg.created_at.astimezone(host.settings.tz).strftime("%Y%m%d-%H%M")
    name = f"fax-{msg.from_.lstrip('+')}-{stamp}.pdf"
    email.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return email


async def mail_received_fax(
    host: Host, job: Job, msg: Message, section: dict[str, Any], pdf: bytes, png: bytes
) -> None:
    """Mail a received fax to its member and their forwarding addresses."""
    member = await host.store.get_member(msg.member_id)
    if member is None:
        return
    smtp = host.settings.smtp
    sender = smtp.sender if smtp else "gateway@localhost"
    email = received_email(host, msg, section, pdf, png, sender)
    email["To"] = member.email
    extra = [a for a in await forwarding_addresses(host, member.id) if a != member.email]
    if extra:
        email["Bcc"] = ", ".join(extra)
    await deliver(host, job, email, f"received fax {msg.id}")


# -- status mails to the sender of an email-to-fax ------------------------------------------
def status_email(host: Host, msg: Message, kind: str, to: str, sender: str,
                 pdf: bytes | None = None, png: bytes | None = None, *,
                 retry: tuple[str, str] | None = None) -> EmailMessage:  # fmt: skip
    """The ``accepted``, ``retry`` (``retry``: the reason in words and the ISO time of the
    next try), ``sent`` or ``failed`` mail about the fax ``msg`` to ``to``."""
    section = _dict(msg.meta.get("fax"))
    pages = section.get("pages")
    origin = section.get("mail")
    subject_of = origin.get("subject") if isinstance(origin, dict) else None
    about = f"your fax to {msg.to}"
    lines: list[str] = []
    if kind == "accepted":
        subject = f"Fax to {msg.to} accepted ({_pages(pages)})"
        lines = [f"We accepted {about}: {_pages(pages)}. It is queued for sending."]
    elif kind == "sent":
        report = _dict(section.get("report"))
        subject = f"Fax to {msg.to} sent ({_pages(report.get('pages') or pages)})"
        lines = [f"{about[0].upper()}{about[1:]} was sent.", "", "Transmission report:"]
        lines.append(f"  Pages: {report.get('pages') or pages}")
        for key, label in (("remote_csi", "Remote station (CSI)"), ("bit_rate", "Bit rate"),
                           ("resolution", "Resolution"), ("ecm", "Error correction"),
                           ("duration_s", "Duration (s)"), ("result", "Result")):  # fmt: skip
            if report.get(key) is not None:
                lines.append(f"  {label}: {report[key]}")
    elif kind == "retry" and retry is not None:
        reason, next_try = retry
        when = parse_iso(next_try).astimezone(host.settings.tz)
        subject = f"Fax to {msg.to} not sent yet"
        lines = [f"{about[0].upper()}{about[1:]} was not sent yet: {reason}.",
                 f"Next try: {when:%Y-%m-%d %H:%M} ({host.settings.timezone})."]  # fmt: skip
        if section.get("pages_sent"):
            lines.append(f"Pages sent so far: {section['pages_sent']} of {pages}; the next "
                         "try goes on from the first page not confirmed.")  # fmt: skip
    else:
        error = msg.error or {}
        reason = str(error.get("message") or error.get("code") or "unknown reason")
        subject = f"Fax to {msg.to} failed"
        lines = [f"{about[0].upper()}{about[1:]} could not be sent: {reason}."]
        nxt = section.get("next_try") or error.get("retry_at")
        if nxt:
            when = parse_iso(str(nxt)).astimezone(host.settings.tz)
            lines.append(f"Next try: {when:%Y-%m-%d %H:%M} ({host.settings.timezone}).")
        else:
            lines.append("It will not be tried again.")
    if subject_of:
        lines += ["", f"Your mail: {subject_of}"]
    lines += ["", "-- ", f"Message {msg.id}"]
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = subject
    email["Date"] = format_datetime(host.clock.now())
    ref = f"{kind}:{retry[1]}" if retry is not None else kind
    email["Message-ID"] = _message_id(f"status:{msg.id}:{ref}:{to}", sender)
    email["Auto-Submitted"] = "auto-replied"
    email["X-Gateway-Message-Id"] = msg.id
    text = "\n".join(lines) + "\n"
    if png is not None:
        cid = make_msgid(domain="fax.invalid")
        email.set_content(text)
        html = "".join(f"<p>{escape(line)}</p>" for line in lines if line)
        email.add_alternative(f"<html><body>{html}<p><img src=\"cid:{cid[1:-1]}\" "
                              f"alt=\"page 1\"></p></body></html>", subtype="html")  # fmt: skip
        html_part = email.get_body(preferencelist=("html",))
        assert html_part is not None  # just added
        html_part.add_related(png, maintype="image", subtype="png", cid=cid, filename="page-1.png")
    else:
        email.set_content(text)
    if pdf is not None:
        email.add_attachment(pdf, maintype="application", subtype="pdf", filename="fax.pdf")
    return email


def refused_email(host: Host, to: str, sender: str, number: str, reason: str,
                  ref: str) -> EmailMessage:  # fmt: skip
    """The mail saying that a fax a sender mailed to ``number`` was refused after the
    mail was accepted (the team's policy or credit changed meanwhile)."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = f"Fax to {number} failed"
    email["Date"] = format_datetime(host.clock.now())
    email["Message-ID"] = _message_id(f"refused:{ref}:{number}", sender)
    email["Auto-Submitted"] = "auto-replied"
    email.set_content(
        f"Your fax to {number} could not be sent: {reason}.\nIt will not be tried again.\n"
    )
    return email


async def refused_mail(host: Host, job: Job, to: str, number: str, reason: str) -> None:
    """Tell the sender that a fax they mailed was refused after the mail was accepted."""
    smtp = host.settings.smtp
    email = refused_email(host, to, smtp.sender if smtp else "gateway@localhost", number,
                          reason, job.id)  # fmt: skip
    await deliver(host, job, email, f"refusal mail about {job.id} to {number}")


def mail_refused_email(host: Host, to: str, sender: str, subject: str, reason: str,
                       ref: str) -> EmailMessage:  # fmt: skip
    """The mail saying that a mail found in the fax mailbox (IMAP, where there is no SMTP
    dialogue to refuse in) was not faxed, and why."""
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = "Your fax by email was refused"
    email["Date"] = format_datetime(host.clock.now())
    email["Message-ID"] = _message_id(f"mail-refused:{ref}", sender)
    email["Auto-Submitted"] = "auto-replied"
    email.set_content(
        f"Your mail {subject!r} was not faxed: {reason}.\nNothing was sent; no unit was charged.\n"
    )
    return email


async def mail_refused_job(host: Host, job: Job) -> None:
    """Send the refusal of a mailbox mail (``fax_mail_refusal``), retried as a job."""
    p = job.payload
    smtp = host.settings.smtp
    email = mail_refused_email(host, str(p["to"]), smtp.sender if smtp else "gateway@localhost",
                               str(p["subject"]), str(p["reason"]), job.id)  # fmt: skip
    await deliver(host, job, email, f"refusal of mail {p.get('ref')} to {p['to']}")
