"""Outgoing mail through the configured relay (``[smtp]``): one call, two kinds of failure.

``send_mail`` hands one ``EmailMessage`` to the relay with aiosmtplib and says what
happened in the terms a job needs: ``TemporaryMailError`` (connection trouble, a 4xx
answer, the relay refusing our credentials, sender or TLS — try again later) or
``PermanentMailError`` (a 5xx answer about the message or its recipients — trying again
cannot help). Used by inbound forwarding and by the fax package (fax-to-email, the
status mails of email-to-fax). Public: extensions import this module.

Transport security follows ``SmtpConfig``: port 465 is implicit TLS (SMTPS); otherwise
``starttls = true`` REQUIRES the upgrade (a relay that does not offer it is an error, the
mail never goes out in the clear), ``starttls = false`` sends in plain text (a relay on
the same host). Certificates are checked against the system's trust store (which
``SSL_CERT_FILE`` can name).
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage

import aiosmtplib

from gateway.config import SmtpConfig

IMPLICIT_TLS_PORT = 465
DEFAULT_TIMEOUT = 30.0
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class MailError(Exception):
    """Base of the failures of ``send_mail``; ``smtp_code`` is the relay's answer, if any."""

    retryable = False

    def __init__(
        self, message: str, *, smtp_code: int | None = None, recipient: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.smtp_code = smtp_code
        self.recipient = recipient


class TemporaryMailError(MailError):
    """The relay could not take the mail now (unreachable, 4xx, credentials, TLS): retry."""

    retryable = True


class PermanentMailError(MailError):
    """The relay refused the mail for good (5xx about the sender, recipients or content)."""


@dataclass(slots=True)
class Delivery:
    """The relay took the mail: its answer, and recipients it refused when others passed."""

    response: str
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


def parse_address(text: str) -> str:
    """``text`` as a bare address (``local@domain``, domain in ASCII); ValueError says why.

    Only what a relay can deliver without extensions: no display name, an ASCII local
    part (non-ASCII ones need SMTPUTF8), a dotted host name as the domain (no literals).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("not an email address (empty)")
    text = text.strip()
    if len(text) > 254:
        raise ValueError("not an email address (longer than 254 characters)")
    try:
        address = Address(addr_spec=text)
    except Exception as exc:
        raise ValueError(f"not an email address ({exc})") from None
    local, domain = address.username, address.domain
    if not local or not domain:
        raise ValueError("not an email address (needs local@domain)")
    if not local.isascii():
        raise ValueError("not an email address the relay can take (non-ASCII local part)")
    if len(local) > 64:
        raise ValueError("not an email address (local part longer than 64 characters)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"not an email address (bad domain {domain!r})") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not an email address (domain {domain!r} is not a host name)")
    return f"{Address(username=local, domain=ascii_domain).addr_spec}"


def tls_options(smtp: SmtpConfig, implicit_tls: bool | None = None) -> tuple[bool, bool]:
    """(implicit TLS, STARTTLS required) for ``smtp``; implicit TLS by default on 465."""
    implicit = smtp.port == IMPLICIT_TLS_PORT if implicit_tls is None else implicit_tls
    return implicit, (not implicit and smtp.starttls)


def _response_error(exc: aiosmtplib.SMTPResponseException, what: str) -> MailError:
    kind = TemporaryMailError if 400 <= exc.code < 500 else PermanentMailError
    recipient = getattr(exc, "recipient", None)
    return kind(f"{what}: {exc.code} {exc.message}", smtp_code=exc.code, recipient=recipient)


async def send_mail(
    smtp: SmtpConfig,
    message: EmailMessage,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls: bool | None = None,
) -> Delivery:
    """Hand ``message`` to the relay; its ``From`` defaults to ``[smtp] from``.

    Envelope sender and recipients come from the headers (``To``, ``Cc``, ``Bcc``).
    ``implicit_tls`` None means: implicit TLS on port 465 only.
    """
    if "From" not in message:
        message["From"] = smtp.sender
    use_tls, start_tls = tls_options(smtp, implicit_tls)
    try:
        refused, response = await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=use_tls,
            start_tls=start_tls,
            tls_context=tls_context,
            timeout=timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        # Every recipient refused: temporary only if every refusal was temporary.
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        kind = TemporaryMailError if all(400 <= c < 500 for c in codes) else PermanentMailError
        first = exc.recipients[0] if exc.recipients else None
        raise kind(
            f"recipients refused: {detail}",
            smtp_code=first.code if first else None,
            recipient=first.recipient if first else None,
        ) from exc
    except aiosmtplib.SMTPAuthenticationError as exc:
        # The operator must fix the credentials; until then mail waits.
        raise TemporaryMailError(
            f"the relay refused our credentials: {exc.code} {exc.message}", smtp_code=exc.code
        ) from exc
    except aiosmtplib.SMTPSenderRefused as exc:
        # Refusing our own sender (or asking for AUTH) is about the relay's configuration,
        # which the operator can fix: the mail waits rather than being dropped.
        raise TemporaryMailError(
            f"the relay refused the sender {exc.sender}: {exc.code} {exc.message}",
            smtp_code=exc.code,
        ) from exc
    except aiosmtplib.SMTPDataError as exc:
        raise _response_error(exc, "message refused") from exc
    except (aiosmtplib.SMTPHeloError, aiosmtplib.SMTPConnectResponseError) as exc:
        # The relay refused us, not this mail: whatever its code, later may work.
        raise TemporaryMailError(
            f"the relay refused the session: {exc.code} {exc.message}", smtp_code=exc.code
        ) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise _response_error(exc, "the relay refused") from exc
    except aiosmtplib.SMTPNotSupported as exc:
        # E.g. STARTTLS required but not offered: a configuration matter, not the mail's.
        raise TemporaryMailError(f"the relay does not support what we need: {exc}") from exc
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        raise TemporaryMailError(
            f"cannot reach the relay {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}"
        ) from exc
    return Delivery(response, {k: (v.code, v.message) for k, v in refused.items()})
