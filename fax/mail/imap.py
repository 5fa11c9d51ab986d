"""Email-to-fax from a mailbox, for providers whose MTA delivers to one: polled with IMAP
IDLE (aioimaplib), each mail checked like the SMTP receiver's (``intake``), accepted
durably (blob + job), then moved to ``imap_folder``. A mail is moved only after it is
stored, so a crash in between fetches it again, and ``intake.accept`` (the mail's key)
queues it once. A refused mail is moved too (it would be refused again), with the reason
in the log; there is no SMTP dialogue to answer in, so a member (never an unknown
sender) gets a mail saying why (``fax_mail_refusal``).

The envelope sender is the ``Return-Path`` the delivering MTA wrote (else ``From``); the
recipients are the ``<number>@<domain>`` addresses of ``Delivered-To``,
``X-Original-To``, ``To`` and ``Cc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from email.message import EmailMessage
from email.utils import getaddresses

import aioimaplib

from fax.mail import intake
from fax.mail.settings import FaxMailSettings, Imap
from gateway.extensions import Host
from gateway.models import Job, Member

log = logging.getLogger("fax.mail")

IDLE_SECONDS = 300  # RFC 2177: re-issue IDLE well before servers drop it (29 min)
RECONNECT_FIRST, RECONNECT_MAX = 1.0, 300.0
TIMEOUT = 30.0
REFUSAL_KIND = "fax_mail_refusal"


def envelope_of(message: EmailMessage, domain: str) -> tuple[str, list[str]]:
    """The sender and the fax recipients of a mail found in the mailbox."""
    sender = ""
    for header in ("Return-Path", "Sender", "From"):
        found = getaddresses([str(v) for v in message.get_all(header, [])])
        if found and found[0][1]:
            sender = found[0][1]
            break
    values = [str(v) for h in ("Delivered-To", "X-Original-To", "To", "Cc")
              for v in message.get_all(h, [])]  # fmt: skip
    recipients: list[str] = []
    for _, address in getaddresses(values):
        if address.lower().endswith("@" + domain) and address.lower() not in recipients:
            recipients.append(address.lower())
    return sender, recipients


async def process(host: Host, settings: FaxMailSettings, raw: bytes) -> str:
    """Check and accept one mail from the mailbox; what became of it, in words."""
    message = intake.parse(raw)
    sender, recipients = envelope_of(message, settings.domain or "")
    member: Member | None = None
    try:
        member = await intake.check_sender(host, sender)
        numbers: list[str] = []
        problems: list[str] = []
        for address in recipients:
            try:
                number = await intake.recipient_number(host, settings, member, address)
                await intake.check_recipient(host, member, number)
            except intake.Refused as refused:
                log.info("fax mail (IMAP) from <%s>: %s", sender, refused.text)
                problems.append(refused.text)
                continue
            if number not in numbers:
                numbers.append(number)
        if not numbers:
            why = "; ".join(problems) or f"no recipient <number>@{settings.domain}"
            raise intake.Refused(550, "5.1.1", why)
        intake.check_content(settings, message, sender)
    except intake.Refused as refused:
        log.info("fax mail (IMAP) from <%s> refused: %s", sender, refused.text)
        if member is not None:  # a member hears why (never a stranger: backscatter)
            await _tell_refused(host, message, sender, refused.text)
        return f"refused: {refused.text}"
    ref = await intake.accept(host, raw, message, sender, member, numbers, "imap")
    return f"accepted ({ref})"


async def _tell_refused(host: Host, message: EmailMessage, sender: str, reason: str) -> None:
    """Queue the refusal mail to a member (once per mail: its job id is the mail's key)."""
    job_id = "job_faxrefused_" + intake.mail_key(message)[:24]
    if await host.store.get_job(job_id) is not None:
        return
    now = host.clock.now()
    payload = {"to": sender, "reason": reason, "subject": str(message.get("Subject", "")),
               "ref": str(message.get("Message-ID", ""))}  # fmt: skip
    job = Job(job_id, REFUSAL_KIND, payload, now, host.settings.job_max_attempts, created_at=now)
    await host.store.enqueue(job)
    host.wake_workers()


async def connect(box: Imap) -> aioimaplib.IMAP4:
    """A logged-in client with ``box.mailbox`` selected."""
    client: aioimaplib.IMAP4
    if box.tls:
        client = aioimaplib.IMAP4_SSL(box.host, box.port, timeout=TIMEOUT,
                                      ssl_context=ssl.create_default_context())  # fmt: skip
    else:
        client = aioimaplib.IMAP4(box.host, box.port, timeout=TIMEOUT)
    await client.wait_hello_from_server()
    response = await client.login(box.user, box.password)
    if response.result != "OK":
        raise ConnectionError(f"IMAP login refused: {response.lines!r}")
    response = await client.select(box.mailbox)
    if response.result != "OK":
        raise ConnectionError(f"IMAP mailbox {box.mailbox!r}: {response.lines!r}")
    return client


async def drain(host: Host, settings: FaxMailSettings, client: aioimaplib.IMAP4) -> int:
    """Process every mail in the selected mailbox and move it away; how many."""
    response = await client.uid_search("ALL")
    if response.result != "OK":
        raise ConnectionError(f"IMAP search failed: {response.lines!r}")
    uids = response.lines[0].decode().split() if response.lines else []
    await _ensure_folder(client, settings.imap_folder)
    done = 0
    for uid in uids:
        fetched = await client.uid("fetch", uid, "(RFC822)")
        raw = next((bytes(line) for line in fetched.lines if isinstance(line, bytearray)), None)
        if fetched.result != "OK" or raw is None:
            log.warning("fax mail (IMAP): could not fetch uid %s: %r", uid, fetched.lines)
            continue
        outcome = await process(host, settings, raw)
        log.info("fax mail (IMAP) uid %s: %s", uid, outcome)
        await _move(client, uid, settings.imap_folder)
        done += 1
    return done


async def _ensure_folder(client: aioimaplib.IMAP4, folder: str) -> None:
    listed = await client.list('""', folder)
    if not any(folder.encode() in line for line in listed.lines[:-1]):
        await client.create(folder)


async def _move(client: aioimaplib.IMAP4, uid: str, folder: str) -> None:
    if client.has_capability("MOVE"):
        moved = await client.uid("move", uid, folder)
        if moved.result == "OK":
            return
    copied = await client.uid("copy", uid, folder)
    if copied.result != "OK":
        raise ConnectionError(f"IMAP copy of uid {uid} to {folder!r} failed: {copied.lines!r}")
    await client.uid("store", uid, "+FLAGS.SILENT", r"(\Deleted)")
    await client.expunge()


async def poll(host: Host, settings: FaxMailSettings, stop: asyncio.Event) -> None:
    """Drain the mailbox, then wait in IDLE for new mail, until ``stop``; reconnects
    after a failure (1 s, 2 s, 4 s … at most 5 minutes apart)."""
    box = settings.imap
    if box is None:
        return
    delay = RECONNECT_FIRST
    while not stop.is_set():
        client: aioimaplib.IMAP4 | None = None
        try:
            client = await connect(box)
            delay = RECONNECT_FIRST
            while not stop.is_set():
                await drain(host, settings, client)
                await _idle(client, stop)
        except Exception as exc:
            log.warning("fax mail (IMAP) %s:%s: %s; again in %.0f s", box.host, box.port,
                        exc, delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, RECONNECT_MAX)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.logout(), TIMEOUT)


async def _idle(client: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
    """Wait in IDLE until the server reports something, ``IDLE_SECONDS`` pass, or stop."""
    idle = await client.idle_start(timeout=IDLE_SECONDS)
    pushed = asyncio.ensure_future(client.wait_server_push())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({pushed, stopped, idle}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pushed.cancel()
        stopped.cancel()
        if not idle.done():
            client.idle_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle, TIMEOUT)
