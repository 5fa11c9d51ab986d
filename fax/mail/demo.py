"""Email-to-fax in ``gateway demo``: the SMTP receiver on a printed loopback port, and a
mail sink (a local aiosmtpd) that keeps every mail the gateway sends (status mails,
received faxes) as an ``.eml`` file in a directory the banner names. The demo's
``[smtp]`` relay is pointed at the sink, and ``[fax_mail]`` at the receiver, so the
``fax_mail`` background service serves it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shlex
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import img2pdf
from aiosmtpd.smtp import SMTP, Envelope, Session
from PIL import Image, ImageDraw, ImageFont

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
    faxers = [m for m in members if m.fax and "fax" in m.addons]
    letter = await asyncio.to_thread(write_letter, folder.parent / "letter.pdf")
    lines = [
        "  Fax by email",
        f"    SMTP receiver: 127.0.0.1:{receiver} (recipients <fax number>@{DOMAIN})",
        f"    Mail the gateway sends (status mails, received faxes) is kept in {folder}",
        f"    A letter to fax: {letter}",
    ]
    if faxers:
        sender = faxers[0]
        # To another member's fax: it goes out to the fax simulator, which sends it back
        # as a fax that member receives, mailed to them as a PDF.
        other = next((m for m in faxers[1:]), None)
        to = f"{(other.fax if other and other.fax else '+4940123456').lstrip('+')}@{DOMAIN}"
        whom = f"{other.name}'s fax number" if other else "a fax machine of the simulator"
        lines.append(f"    {sender.name} faxes it to {whom} with:")
        for command in try_commands(receiver, sender.email, to, letter):
            lines.append(f"    {command}")
    return "\n".join([*lines, ""])


def write_letter(path: Path) -> Path:
    """A one-page A4 PDF letter to fax in the demo."""
    page = Image.new("L", (1240, 1754), 255)  # A4 at 150 dpi
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=36)
    for n, line in enumerate(("Demo GmbH", "", "A fax sent by email through the gateway demo.",
                              "", "Mit freundlichen Grüßen", "Anna Schmidt")):  # fmt: skip
        draw.text((150, 200 + 60 * n), line, fill=0, font=font)
    draw.rectangle((150, 700, 1090, 1100), outline=0, width=6)
    buffer = io.BytesIO()
    page.save(buffer, "PNG", dpi=(150, 150))
    path.write_bytes(img2pdf.convert(buffer.getvalue()))
    return path


def try_commands(port: int, sender: str, to: str, letter: Path) -> list[str]:
    """Commands that mail ``letter`` to the receiver: swaks when it is installed, and a
    Python one-liner that needs nothing beyond python3."""
    out = []
    if shutil.which("swaks"):
        out.append(f"swaks --server 127.0.0.1:{port} --from {sender} --to {to} "
                   f"--attach @{shlex.quote(str(letter))}")  # fmt: skip
    script = (  # double quotes inside: the shell's single quotes wrap it as it is
        'import smtplib, email.message as m; e = m.EmailMessage(); '
        f'e["From"] = "{sender}"; e["To"] = "{to}"; e["Subject"] = "Fax"; '
        f'e.add_attachment(open("{letter}", "rb").read(), maintype="application", '
        'subtype="pdf", filename="letter.pdf"); '
        f'smtplib.SMTP("127.0.0.1", {port}).send_message(e)'
    )
    out.append(f"python3 -c {shlex.quote(script)}")
    return out
