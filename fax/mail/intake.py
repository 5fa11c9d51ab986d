"""Email-to-fax: the checks every incoming mail passes, its durable acceptance, and the
``fax_mail_in`` job that turns it into faxes. The SMTP receiver (``receiver.py``) and the
IMAP mailbox (``imap.py``) both go through here.

Checks, each a :class:`Refused` with an SMTP reply in words:

* the envelope sender is a member's registered address or on that member's allowlist
  (``senders.py``), and with ``trust_authentication_results`` the provider MTA's
  ``Authentication-Results`` show SPF or DKIM passing for the sender's domain;
* each recipient is ``<number>@<domain>`` (E.164 digits with or without ``+``/``00``,
  or national in the member's team's region) that the member may fax: the whole
  ``outbound.draft`` (fax number, add-on, destination rules, a connector) runs at RCPT;
* the mail has the fixed ``subject`` and something to fax.

Nothing accepted is lost: :func:`accept` stores the raw mail as a blob and enqueues the
job before the receiver answers 250. The job submits one fax per recipient through the
one outbound path, with message ids derived from the mail (its Message-ID and a hash of
what it carries) and the number: the same mail delivered twice, or a job run again after
a crash, finds the faxes already submitted and sends nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from fax.mail import outgoing, senders
from fax.mail.settings import FaxMailSettings
from gateway import outbound
from gateway.auth import Principal
from gateway.commands import FaxCover, SendRequest
from gateway.errors import GatewayError
from gateway.extensions import Host
from gateway.ids import new_id
from gateway.models import Attachment, Channel, Job, Member
from gateway.numbers import normalize

log = logging.getLogger("fax.mail")

JOB_KIND = "fax_mail_in"
ORIGIN = "fax_mail_origin:{}"  # settings scope: who mailed the fax (status mails)
DOCUMENT_TYPES = {
    "application/pdf": ".pdf",
    "image/tiff": ".tif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}
MAX_NOTE = 4000  # commands.MAX_COVER_NOTE
_LOCAL = re.compile(r"^(\+|00)?[0-9][0-9.\-/ ]{2,30}$")
_RESULT = re.compile(r"\b(spf|dkim)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROP = re.compile(r"\b(smtp\.mailfrom|header\.d|header\.i|smtp\.helo)\s*=\s*([^\s;]+)", re.I)


class Refused(Exception):
    """A mail (or one recipient of it) refused at SMTP time: ``reply`` is the SMTP answer."""

    def __init__(self, code: int, status: str, text: str) -> None:
        super().__init__(text)
        self.reply = f"{code} {status} {text}"
        self.text = text


@dataclass(frozen=True, slots=True)
class Document:
    """One attachment that becomes fax pages."""

    content_type: str
    filename: str
    data: bytes


def parse(raw: bytes) -> EmailMessage:
    """A raw mail (CRLF or LF) as an ``EmailMessage``."""
    message = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
    assert isinstance(message, EmailMessage)
    return message


async def check_sender(host: Host, sender: str) -> Member:
    """The member who may fax from the envelope sender, or ``Refused`` (550 5.7.1)."""
    member = await senders.member_for(host, sender)
    if member is None:
        raise Refused(550, "5.7.1", f"<{sender}> may not send faxes by email: it is not a "
                      "member's address nor on a member's fax-mail allowlist")  # fmt: skip
    return member


async def recipient_number(host: Host, settings: FaxMailSettings, member: Member,
                           address: str) -> str:  # fmt: skip
    """The fax number of ``<number>@<domain>`` in E.164, or ``Refused`` (550 5.1.1)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    if not local or domain.lower() != settings.domain:
        raise Refused(550, "5.1.1", f"<{address}>: faxes go to <number>@{settings.domain}")
    if not _LOCAL.match(local):
        raise Refused(550, "5.1.1", f"<{address}>: {local!r} is not a fax number")
    digits = re.sub(r"[.\-/ ]", "", local)
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    team = await host.store.get_team(member.team_id)
    region = team.region if team else host.settings.region
    try:
        return normalize(digits, region)
    except GatewayError as exc:
        raise Refused(550, "5.1.1", f"<{address}>: {exc.detail}") from None


def _principal(member: Member) -> Principal:
    return Principal(member.team_id, member.id, "fax-mail")


async def check_recipient(host: Host, member: Member, number: str) -> None:
    """Whether ``member`` may fax ``number`` now (fax number, add-on, destination rules,
    a connector), or ``Refused`` (550 5.7.1) with the gateway's reason."""
    if not member.fax:
        raise Refused(550, "5.7.1", f"member {member.name} has no fax number")
    request = SendRequest(channel=Channel.FAX, from_=member.fax, to=number, text="check")
    try:
        await outbound.draft(host, _principal(member), request)
    except GatewayError as exc:
        raise Refused(550, "5.7.1", f"fax to {number} refused: {exc.detail}") from None


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip(" <>").lower()


def authenticated(message: EmailMessage, sender: str) -> bool:
    """Whether an ``Authentication-Results`` header shows SPF or DKIM passing for the
    sender's domain (or a parent domain of it)."""
    domain = _domain_of(sender)
    for header in message.get_all("Authentication-Results", []):
        for method, result, rest in _RESULT.findall(str(header)):
            if result.lower() != "pass":
                continue
            for prop, value in _PROP.findall(rest):
                signed = _domain_of(value) if "@" in value else value.strip(" <>").lower()
                wanted = method.lower() == "spf" or prop.lower() != "smtp.mailfrom"
                if wanted and (domain == signed or domain.endswith("." + signed)):
                    return True
    return False


def documents(message: EmailMessage) -> tuple[list[Document], str]:
    """The attachments that become the fax (PDF, TIFF, PNG, JPEG, in order) and the
    text body (the cover note, "" for none)."""
    body = message.get_body(preferencelist=("plain",))
    note = body.get_content().strip() if body is not None else ""
    docs: list[Document] = []
    for n, part in enumerate(message.iter_attachments(), 1):
        ctype = part.get_content_type()
        if ctype == "image/jpg":
            ctype = "image/jpeg"
        if ctype == "application/octet-stream":  # some mailers: go by the name
            name = (part.get_filename() or "").lower()
            ctype = next((t for t, ext in DOCUMENT_TYPES.items() if name.endswith(ext)), ctype)
        if ctype not in DOCUMENT_TYPES:
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data:
            name = part.get_filename() or f"document-{n}{DOCUMENT_TYPES[ctype]}"
            docs.append(Document(ctype, name, data))
    return docs, note[:MAX_NOTE]


def check_content(settings: FaxMailSettings, message: EmailMessage, sender: str) -> None:
    """The DATA checks: subject, Authentication-Results, something to fax."""
    if settings.subject is not None:
        subject = str(message.get("Subject", "")).strip()
        if subject.casefold() != settings.subject.casefold():
            raise Refused(550, "5.7.1", f"the subject must be {settings.subject!r} "
                          "to send a fax by email")  # fmt: skip
    if settings.trust_authentication_results and not authenticated(message, sender):
        raise Refused(550, "5.7.1", f"no SPF or DKIM pass for {_domain_of(sender)} in "
                      "Authentication-Results: the sender is not verified")  # fmt: skip
    docs, note = documents(message)
    if not docs and not note:
        raise Refused(550, "5.6.0", "nothing to fax: attach a PDF, TIFF, PNG or JPEG, or "
                      "write a text")  # fmt: skip


def mail_key(message: EmailMessage) -> str:
    """What makes two deliveries the same mail: its Message-ID and a hash of what it
    carries (the same Message-ID with other content is another mail)."""
    docs, note = documents(message)
    digest = hashlib.sha256()
    digest.update(str(message.get("Message-ID", "")).strip().encode())
    digest.update(note.encode())
    for doc in docs:
        digest.update(doc.content_type.encode() + hashlib.sha256(doc.data).digest())
    return digest.hexdigest()


def message_id(key: str, member_id: str, number: str) -> str:
    """The fax's message id, fixed by the mail, the member and the number."""
    raw = hashlib.sha256(f"{key}\n{member_id}\n{number}".encode()).digest()
    return "msg_" + base64.b32encode(raw).decode()[:26]


async def accept(host: Host, raw: bytes, message: EmailMessage, sender: str, member: Member,
                 numbers: list[str], source: str) -> str:  # fmt: skip
    """Store the mail and its job durably (before the 250); returns the job id. A mail
    already accepted (same key, same member) is not queued twice."""
    key = mail_key(message)
    job_id = "job_faxmail_" + hashlib.sha256(f"{key}\n{member.id}".encode()).hexdigest()[:24]
    if await host.store.get_job(job_id) is not None:
        return job_id
    sha = await asyncio.to_thread(host.blobs.put, raw)
    now = host.clock.now()
    payload: dict[str, Any] = {
        "raw": sha, "sender": sender, "member_id": member.id, "numbers": numbers,
        "key": key, "source": source,
    }  # fmt: skip
    job = Job(job_id, JOB_KIND, payload, now, host.settings.job_max_attempts, created_at=now)
    await host.store.enqueue(job)
    host.wake_workers()
    return job_id


async def _store_documents(host: Host, team_id: str, docs: list[Document]) -> list[str]:
    ids = []
    for doc in docs:
        sha = await asyncio.to_thread(host.blobs.put, doc.data)
        att = Attachment(new_id("att"), team_id, sha, len(doc.data), doc.content_type,
                         doc.filename, host.clock.now())  # fmt: skip
        await host.store.put_attachment(att)
        ids.append(att.id)
    return ids


async def intake_job(host: Host, job: Job) -> None:
    """Submit the faxes of an accepted mail, one per recipient (each at most once)."""
    p = job.payload
    member = await host.store.get_member(str(p["member_id"]))
    if member is None or not member.fax:
        log.warning("fax mail %s: member %s is gone; not sent", job.id, p["member_id"])
        return
    raw = await asyncio.to_thread(host.blobs.get, str(p["raw"]))
    message = parse(raw)
    docs, note = documents(message)
    attachment_ids: list[str] | None = None
    for number in p["numbers"]:
        msg_id = message_id(str(p["key"]), member.id, str(number))
        if await host.store.get_message(msg_id) is not None:
            continue  # submitted by an earlier delivery or run
        if attachment_ids is None:
            attachment_ids = await _store_documents(host, member.team_id, docs)
        origin = {"sender": p["sender"], "subject": str(message.get("Subject", "")),
                  "source": p.get("source", "smtp")}  # fmt: skip
        await host.store.put_setting(ORIGIN.format(msg_id), origin)
        request = SendRequest(
            channel=Channel.FAX,
            from_=member.fax,
            to=str(number),
            attachments=attachment_ids or None,
            cover=FaxCover(note=note) if note else None,
        )
        try:
            await outbound.submit(host, _principal(member), request, message_id=msg_id)
        except GatewayError as exc:
            # Allowed at RCPT, refused now (the policy or the credit changed meanwhile):
            # the sender hears it by mail.
            log.info("fax mail %s to %s refused: %s", job.id, number, exc.detail)
            await outgoing.refused_mail(host, job, str(p["sender"]), str(number), exc.detail)
