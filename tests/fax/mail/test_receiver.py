"""Email-to-fax through the SMTP receiver, with real servers on loopback: the receiver
(aiosmtpd) in the test's loop, the stdlib's smtplib as the emailer, aiosmtpd as the
provider's relay for the status mails, and the test connector for channel fax."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import subprocess
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from fax.mail import intake, receiver, senders, status
from fax.mail.settings import FaxMailSettings
from gateway.ids import new_id
from gateway.models import Member, Message
from gateway.process import worker
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from tests.conftest import free_port
from tests.fax import samples
from tests.fax.test_convert import faxfake, used_units
from tests.gateway.api.test_policy import put as put_policy
from tests.gateway.conftest import FAX_A, Seed
from tests.gateway.test_forwarding import use_relay
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio
DOMAIN = "fax.example.com"
ANNA = "anna@example.com"


@dataclasses.dataclass
class Receiver:
    port: int
    rt: Runtime


@pytest.fixture
async def smtp_in(rt: Runtime, seed: Seed, smtp_server: SmtpServer) -> AsyncIterator[Receiver]:
    """The receiver on a free port, ``[fax_mail]`` set, ``[smtp]`` at the relay."""
    settings = FaxMailSettings(domain=DOMAIN, subject="FAX", max_message_bytes=2_000_000)
    configure(rt, settings)
    use_relay(rt, smtp_server.port)
    port = free_port()
    server = await receiver.start(rt, settings, listen=("127.0.0.1", port))
    try:
        yield Receiver(port, rt)
    finally:
        server.close()
        await server.wait_closed()


def configure(rt: Runtime, settings: FaxMailSettings) -> None:
    extensions = {**rt.settings.extensions, "fax_mail": settings}
    rt.settings = dataclasses.replace(rt.settings, extensions=extensions)


def mail(*, sender: str = ANNA, to: str = f"4940123456@{DOMAIN}", subject: str = "FAX",
         text: str | None = "Bitte unterschreiben.", pdf: bytes | None = None,
         extra: dict[str, str] | None = None) -> EmailMessage:  # fmt: skip
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = subject
    email["Message-ID"] = "<m1@example.com>"
    for key, value in (extra or {}).items():
        email[key] = value
    email.set_content(text or "")
    if pdf is not None:
        email.add_attachment(pdf, maintype="application", subtype="pdf", filename="brief.pdf")
    return email


def _send(port: int, email: EmailMessage, sender: str, rcpts: list[str]) -> dict[str, Any]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return dict(client.send_message(email, from_addr=sender, to_addrs=rcpts))


async def send(port: int, email: EmailMessage, sender: str = ANNA,
               rcpts: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """smtplib in a thread (the receiver runs in this loop)."""
    rcpts = rcpts or [str(email["To"])]
    return await asyncio.to_thread(_send, port, email, sender, rcpts)


async def run_all(rt: Runtime) -> None:
    """Run jobs and the status watcher's scans until nothing is left."""
    w = worker(rt)
    while True:
        ran = await w.run_once()
        scanned = await status.scan(rt)
        if not ran and not scanned:
            return


async def faxes(rt: Runtime, seed: Seed) -> list[Message]:
    page = await rt.store.list_messages(MessageFilter(seed.team.id, channel="fax"), None, 50)
    return list(page.items)


async def test_mail_becomes_a_fax_with_status_mails(
    smtp_in: Receiver, rt: Runtime, seed: Seed, smtp_server: SmtpServer
) -> None:
    refused = await send(smtp_in.port, mail(pdf=samples.pdf(2)))
    assert refused == {}
    # Accepted means stored: the mail's job is in the store before anything ran.
    jobs = await rt.store.list_jobs("ready", None, 10)
    assert [j.kind for j in jobs] == [intake.JOB_KIND]
    await run_all(rt)
    [fax] = await faxes(rt, seed)
    assert fax.status == "sent" and fax.from_ == FAX_A and fax.to == "+4940123456"
    assert fax.meta["fax"]["pages"] == 3  # the text as the cover note, then 2 PDF pages
    assert fax.meta["fax"]["cover"]["note"] == "Bitte unterschreiben."
    assert faxfake(rt).sent[-1].id == fax.id
    assert await used_units(rt, seed) == 1
    subjects = [str(r.message["Subject"]) for r in smtp_server.received]
    assert subjects == [
        "Fax to +4940123456 accepted (3 pages)",
        "Fax to +4940123456 sent (3 pages)",
    ]
    assert all(r.rcpt_tos == [ANNA] for r in smtp_server.received)
    sent = smtp_server.received[1].message
    types = [p.get_content_type() for p in sent.walk()]
    assert "image/png" in types and "application/pdf" in types  # page 1 inline, the PDF
    html = sent.get_body(preferencelist=("html",))
    assert html is not None and "cid:" in html.get_content()


async def test_the_same_mail_twice_is_sent_once_and_recipients_make_faxes(
    smtp_in: Receiver, rt: Runtime, seed: Seed
) -> None:
    rcpts = [f"+4940123456@{DOMAIN}", f"0049 89 1234567@{DOMAIN}".replace(" ", ""),
             f"040123456@{DOMAIN}"]  # fmt: skip
    email = mail(pdf=samples.pdf(1))
    assert await send(smtp_in.port, email, rcpts=rcpts) == {}
    await run_all(rt)
    assert await send(smtp_in.port, email, rcpts=rcpts) == {}  # delivered again
    await run_all(rt)
    sent = await faxes(rt, seed)
    # +4940123456 and 040123456 (national, the team's region DE) are the same number.
    assert sorted(m.to for m in sent) == ["+4940123456", "+49891234567"]
    assert all(m.status == "sent" for m in sent)
    assert len(faxfake(rt).sent) == 2 and await used_units(rt, seed) == 2


async def test_refusals_at_smtp_time(
    smtp_in: Receiver, rt: Runtime, seed: Seed, client: httpx.AsyncClient
) -> None:
    port = smtp_in.port

    async def rcpt_refusal(email: EmailMessage, sender: str = ANNA) -> str:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            await send(port, email, sender)
        [(code, text)] = caught.value.recipients.values()
        assert code == 550
        return bytes(text).decode()

    assert "not a member's address" in await rcpt_refusal(mail(sender="eve@evil.example"),
                                                          "eve@evil.example")  # fmt: skip
    # Ben has neither the fax add-on nor a fax number.
    assert "no fax number" in await rcpt_refusal(mail(sender="ben@example.com"),
                                                 "ben@example.com")  # fmt: skip
    # Carla has a fax number but has not booked the fax add-on.
    carla = Member(new_id("mem"), seed.team.id, "Carla", "carla@example.com", None,
                   "+4930123456709", frozenset({"sms"}), True, rt.clock.now())  # fmt: skip
    await rt.store.create_member(carla, 10)
    text = await rcpt_refusal(mail(sender=carla.email), carla.email)
    assert "has not booked the fax add-on" in text
    assert "is not a fax number" in await rcpt_refusal(mail(to=f"office@{DOMAIN}"))
    assert "faxes go to <number>@" in await rcpt_refusal(mail(to="4940123456@other.example"))
    await put_policy(client, seed, {"blocked_prefixes": ["+4940"]})
    assert "+4940" in await rcpt_refusal(mail())
    await put_policy(client, seed, {"blocked_prefixes": []})

    async def data_refusal(email: EmailMessage) -> tuple[int, str]:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            await send(port, email)
        return caught.value.smtp_code, bytes(caught.value.smtp_error).decode()

    code, text = await data_refusal(mail(subject="Hello", pdf=samples.pdf(1)))
    assert code == 550 and "subject must be 'FAX'" in text
    code, text = await data_refusal(mail(text=None))
    assert code == 550 and "nothing to fax" in text
    with pytest.raises(smtplib.SMTPException) as too_big:
        await send(port, mail(pdf=b"%PDF-1.4\n" + bytes(2_100_000)))
    assert "552" in str(too_big.value) or getattr(too_big.value, "smtp_code", 0) == 552
    assert await rt.store.list_jobs("ready", None, 10) == []  # nothing refused was kept
    assert await faxes(rt, seed) == []


async def test_allowlist_and_authentication_results(
    smtp_in: Receiver, rt: Runtime, seed: Seed
) -> None:
    scanner = "scanner@office.example"
    email = mail(sender=scanner, pdf=samples.pdf(1))
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await send(smtp_in.port, email, scanner)
    assert await senders.allow(rt, seed.anna.id, scanner) == [scanner]
    assert (await senders.member_for(rt, scanner)) == seed.anna
    configure(rt, dataclasses.replace(
        rt.settings.extension("fax_mail", FaxMailSettings), trust_authentication_results=True
    ))  # fmt: skip
    smtp_in_settings = rt.settings.extension("fax_mail", FaxMailSettings)
    port = free_port()
    server = await receiver.start(rt, smtp_in_settings, listen=("127.0.0.1", port))
    try:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            await send(port, email, scanner)
        assert "no SPF or DKIM pass for office.example" in bytes(caught.value.smtp_error).decode()
        forged = mail(sender=scanner, pdf=samples.pdf(1), extra={
            "Authentication-Results": "mx.provider.example; spf=fail smtp.mailfrom=office.example"
            "; dkim=pass header.d=evil.example"})  # fmt: skip
        with pytest.raises(smtplib.SMTPDataError):
            await send(port, forged, scanner)
        signed = mail(sender=scanner, pdf=samples.pdf(1), extra={
            "Authentication-Results": "mx.provider.example; spf=pass "
            "smtp.mailfrom=scanner@office.example"})  # fmt: skip
        assert await send(port, signed, scanner) == {}
    finally:
        server.close()
        await server.wait_closed()
    await run_all(rt)
    [fax] = await faxes(rt, seed)
    assert fax.status == "sent" and fax.member_id == seed.anna.id
    assert await senders.deny(rt, seed.anna.id, scanner) == []
    assert await senders.member_for(rt, scanner) is None


async def test_unconvertible_mail_is_refunded_and_reported(
    smtp_in: Receiver, rt: Runtime, seed: Seed, smtp_server: SmtpServer
) -> None:
    email = mail(text=None, pdf=samples.pdf(1, encrypt="secret"))
    assert await send(smtp_in.port, email) == {}
    await run_all(rt)
    [fax] = await faxes(rt, seed)
    assert fax.status == "failed" and await used_units(rt, seed) == 0
    [report] = smtp_server.received
    assert str(report.message["Subject"]) == "Fax to +4940123456 failed"
    body = report.message.get_body(preferencelist=("plain",))
    assert body is not None and "password" in body.get_content()


async def test_swaks_as_the_emailer(
    smtp_in: Receiver, rt: Runtime, seed: Seed, tmp_path: Any
) -> None:
    doc = tmp_path / "brief.pdf"
    doc.write_bytes(samples.pdf(1))
    done = await asyncio.to_thread(
        subprocess.run,
        ["swaks", "--server", f"127.0.0.1:{smtp_in.port}", "--from", ANNA,
         "--to", f"4930999999@{DOMAIN}", "--header", "Subject: FAX",
         "--attach", f"@{doc}", "--attach-type", "application/pdf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "250 2.0.0 accepted: 1 fax" in done.stdout
    await run_all(rt)
    [fax] = await faxes(rt, seed)
    assert fax.to == "+4930999999" and fax.status == "sent" and fax.meta["fax"]["pages"] >= 1
