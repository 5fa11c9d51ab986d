"""The ``[fax_mail]`` section: email-to-fax's SMTP receiver and IMAP mailbox.

::

    [fax_mail]
    domain = "fax.example.com"        # recipients <number>@fax.example.com
    listen = "0.0.0.0:2525"           # the SMTP receiver (no listen: no receiver)
    tls_cert = "/etc/gateway/fax.crt" # STARTTLS offered with both
    tls_key = "/etc/gateway/fax.key"
    subject = "FAX"                   # the fixed subject the provider prescribes
    max_message_bytes = 26214400
    trust_authentication_results = false
    imap_url = "imaps://user:pass@imap.example.com/INBOX"   # optional mailbox
    imap_folder = "Processed"         # where processed mails go

Without a ``domain`` email-to-fax is off (the section may be absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from gateway.errors import ConfigError

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
_KEYS = {
    "domain", "listen", "tls_cert", "tls_key", "subject", "max_message_bytes",
    "trust_authentication_results", "imap_url", "imap_folder",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Imap:
    """The mailbox polled with IMAP IDLE."""

    host: str
    port: int
    tls: bool
    user: str
    password: str
    mailbox: str


@dataclass(frozen=True, slots=True)
class FaxMailSettings:
    """Parsed ``[fax_mail]``; ``domain`` None: email-to-fax is off."""

    domain: str | None = None
    listen: tuple[str, int] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    subject: str | None = None
    max_message_bytes: int = DEFAULT_MAX_BYTES
    trust_authentication_results: bool = False
    imap: Imap | None = None
    imap_folder: str = "Processed"


def _str(table: Mapping[str, Any], key: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"fax_mail.{key}: must be a non-empty string")
    return value.strip()


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:25`` for IPv6) as a pair; ``ConfigError`` says why not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ConfigError(f"fax_mail.listen: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def parse_imap(url: str) -> Imap:
    """``imap://`` or ``imaps://user:password@host[:port]/MAILBOX`` (INBOX by default)."""
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise ConfigError("fax_mail.imap_url: must be imap://… or imaps://user:pass@host/box")
    if not parts.username or parts.password is None:
        raise ConfigError("fax_mail.imap_url: needs user and password (user:pass@host)")
    tls = parts.scheme == "imaps"
    try:
        port = parts.port or (993 if tls else 143)
    except ValueError:
        raise ConfigError("fax_mail.imap_url: bad port") from None
    mailbox = unquote(parts.path.lstrip("/")) or "INBOX"
    return Imap(parts.hostname, port, tls, unquote(parts.username), unquote(parts.password),
                mailbox)  # fmt: skip


def parse(table: Mapping[str, Any] | None) -> FaxMailSettings:
    """``FaxMailSettings`` from the ``[fax_mail]`` table (None: email-to-fax off)."""
    if not table:
        return FaxMailSettings()
    for name in table:
        if name not in _KEYS:
            raise ConfigError(f"fax_mail.{name}: unknown key")
    domain = _str(table, "domain")
    if domain is None:
        raise ConfigError("fax_mail.domain: missing (recipients are <number>@domain)")
    listen_text = _str(table, "listen")
    cert, key = _str(table, "tls_cert"), _str(table, "tls_key")
    if (cert is None) != (key is None):
        raise ConfigError("fax_mail.tls_cert: tls_cert and tls_key go together")
    size = table.get("max_message_bytes", DEFAULT_MAX_BYTES)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1024:
        raise ConfigError("fax_mail.max_message_bytes: must be an integer of at least 1024")
    trust = table.get("trust_authentication_results", False)
    if not isinstance(trust, bool):
        raise ConfigError("fax_mail.trust_authentication_results: must be true or false")
    imap_url = _str(table, "imap_url")
    return FaxMailSettings(
        domain=domain.lower(),
        listen=parse_listen(listen_text) if listen_text else None,
        tls_cert=cert,
        tls_key=key,
        subject=_str(table, "subject"),
        max_message_bytes=size,
        trust_authentication_results=trust,
        imap=parse_imap(imap_url) if imap_url else None,
        imap_folder=_str(table, "imap_folder") or "Processed",
    )
