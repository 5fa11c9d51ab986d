"""The gateway's own SMTP receiver for email-to-fax (aiosmtpd, in the event loop of the
``fax_mail`` background service).

Every refusal happens in the SMTP dialogue, never by a bounce later: an unknown sender,
a recipient that is not ``<number>@<domain>`` or that the member may not fax, and a
member without the fax add-on are refused at RCPT (550 with the reason); a mail without
the fixed subject, without SPF/DKIM (when trusted), or with nothing to fax at DATA; a mail
larger than ``max_message_bytes`` by aiosmtpd (552). A mail is answered 250 only once it
and its job are stored (``intake.accept``); if that fails the answer is 451 and the
provider's MTA tries again. STARTTLS is offered when ``tls_cert``/``tls_key`` are set.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from fax.mail import intake
from fax.mail.settings import FaxMailSettings
from gateway.extensions import Host
from gateway.models import Member

log = logging.getLogger("fax.mail")


class FaxMailHandler:
    """aiosmtpd's handler: the RCPT and DATA checks of ``intake``, then ``accept``."""

    def __init__(self, host: Host, settings: FaxMailSettings) -> None:
        self.host = host
        self.settings = settings
        # Per transaction (aiosmtpd makes a new Envelope for each): the sending member
        # and the numbers accepted so far; gone with the envelope (a client that quits
        # after RCPT leaves nothing behind).
        self._member: weakref.WeakKeyDictionary[Envelope, Member] = weakref.WeakKeyDictionary()
        self._numbers: weakref.WeakKeyDictionary[Envelope, list[str]] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:  # fmt: skip
        """Refuse a recipient this sender may not fax, with the reason."""
        sender = envelope.mail_from or ""
        try:
            member = await intake.check_sender(self.host, sender)
            number = await intake.recipient_number(self.host, self.settings, member, address)
            await intake.check_recipient(self.host, member, number)
        except intake.Refused as refused:
            log.info("fax mail from <%s> to <%s> refused: %s", sender, address, refused.text)
            return refused.reply
        except Exception:
            log.exception("fax mail from <%s> to <%s>: checking failed", sender, address)
            return "451 4.3.0 cannot check this recipient now; try again later"
        self._member[envelope] = member
        numbers = self._numbers.setdefault(envelope, [])
        if number not in numbers:
            numbers.append(number)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Check the mail; store it and its job, then answer 250 (or say why not)."""
        member = self._member.pop(envelope, None)
        numbers = self._numbers.pop(envelope, [])
        raw = envelope.original_content or envelope.content
        sender = envelope.mail_from or ""
        if member is None or not numbers or not isinstance(raw, bytes):
            return "554 5.5.1 no valid recipients"
        try:
            message = intake.parse(raw)
            intake.check_content(self.settings, message, sender)
            ref = await intake.accept(self.host, raw, message, sender, member, numbers, "smtp")
        except intake.Refused as refused:
            log.info("fax mail from <%s> refused: %s", sender, refused.text)
            return refused.reply
        except Exception:
            log.exception("fax mail from <%s>: could not be stored", sender)
            return "451 4.3.0 the mail could not be stored; try again later"
        faxes = "1 fax" if len(numbers) == 1 else f"{len(numbers)} faxes"
        return f"250 2.0.0 accepted: {faxes} ({ref})"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Forget the transaction's recipients."""
        self._member.pop(envelope, None)
        self._numbers.pop(envelope, None)
        return "250 OK"


def tls_context(settings: FaxMailSettings) -> ssl.SSLContext | None:
    """The STARTTLS context of ``tls_cert``/``tls_key`` (None without them)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    return ctx


async def start(host: Host, settings: FaxMailSettings, *, listen: tuple[str, int] | None = None,
                ) -> asyncio.Server:  # fmt: skip
    """Listen on ``listen`` (default ``settings.listen``); returns the server."""
    where = listen or settings.listen
    if where is None:
        raise ValueError("fax_mail.listen is not set")
    handler = FaxMailHandler(host, settings)
    ctx = tls_context(settings)
    kwargs: dict[str, Any] = {
        "data_size_limit": settings.max_message_bytes,
        "hostname": settings.domain or "localhost",
        "ident": "gateway fax-mail",
        "decode_data": False,
    }
    if ctx is not None:
        kwargs["tls_context"] = ctx
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, **kwargs), where[0], where[1])
    log.info("fax mail: SMTP receiver on %s:%s", *where)
    return server


async def serve(host: Host, settings: FaxMailSettings, stop: asyncio.Event) -> None:
    """Run the receiver until ``stop``."""
    server = await start(host, settings)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
