"""Email-to-fax in ``gateway demo``: the SMTP receiver on a printed loopback port, and a
mail sink (a local aiosmtpd) that keeps every mail the gateway sends (status mails,
received faxes) as an ``.eml`` file in a directory the banner names. The demo's
``[smtp]`` relay is pointed at the sink, and ``[fax_mail]`` at the receiver, so the
``fax_mail`` background service serves it."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from fax.mail.settings import FaxMailSettings
from gateway.config import SmtpConfig
from gateway.extensions import Host
from gateway.models import Member

DOMAIN = "fax.localhost"
SENDER = "gateway@demo.localhost"
_servers: list[asyncio.Server] = []  # the sink lives as long as the demo's event loop


class MailSink:
    """aiosmtpd handler: each mail as ``NNNN.eml`` in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the mail."""
        self.count += 1
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        path = self.folder / f"{self.count:04d}.eml"
        await asyncio.to_thread(path.write_bytes, data)
        return "250 2.0.0 kept"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_sink(folder: Path) -> int:
    """The mail sink on a free loopback port; returns the port."""
    folder.mkdir(parents=True, exist_ok=True)
    handler = MailSink(folder)
    port = free_port()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.localhost", decode_data=False), "127.0.0.1", port
    )
    _servers.append(server)
    return port


async def demo(host: Host, members: Sequence[Member]) -> str:
    """Point ``[smtp]`` at a new mail sink and ``[fax_mail]`` at a receiver port; the
    banner lines."""
    folder = Path(host.settings.blobs).parent / "mail-sent"
    sink = await start_sink(folder)
    receiver = free_port()
    settings = host.settings
    extensions: dict[str, Any] = dict(settings.extensions)
    extensions["fax_mail"] = FaxMailSettings(domain=DOMAIN, listen=("127.0.0.1", receiver))
    smtp = SmtpConfig("127.0.0.1", sink, starttls=False, sender=SENDER)
    # The demo's runtime takes new settings before it serves (Host only reads them).
    object.__setattr__(host, "settings", dataclasses.replace(settings, smtp=smtp,
                                                            extensions=extensions))  # fmt: skip
    faxer = next((m for m in members if m.fax and "fax" in m.addons), None)
    lines = [
        "  Fax by email",
        f"    SMTP receiver: 127.0.0.1:{receiver} (recipients <number>@{DOMAIN})",
        f"    Mail the gateway sends is kept in {folder}",
    ]
    if faxer is not None:
        lines.append(
            f"    swaks --server 127.0.0.1:{receiver} --from {faxer.email} "
            f"--to 4940123456@{DOMAIN} --attach @letter.pdf"
        )
    return "\n".join(lines)
