"""Fax end to end through the real paths, both halves together: the fax API and
email-to-fax (conversion, status mails, fax-to-email) over the ``sip_t38`` connector to
the fax simulator and back, on SQLite. The media run on the simulated ticker
(``tests/connectors/sip_t38/conftest.py``), one test in real time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from fax.mail import receiver
from fax.mail.settings import FaxMailSettings
from gateway.api.app import create_app
from gateway.events import FAX_PAGE, MESSAGE_CREATED, MESSAGE_STATUS
from gateway.models import Message
from gateway.store.base import MessageFilter
from tests.conftest import free_port
from tests.connectors.sip_t38.conftest import REMOTE, Gateway, gateway  # noqa: F401
from tests.fax import samples
from tests.fax.mail.test_receiver import configure, mail, run_all, send
from tests.fax.t38.support import assert_same_pages, make_tiff
from tests.fax.test_convert import run_jobs, upload, used_units
from tests.gateway.conftest import FAX_A, auth
from tests.gateway.test_forwarding import use_relay
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio
DOMAIN = "fax.example.com"
CALLER = "+4940111222"


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """The API in-process (workers off: the tests run the jobs)."""
    transport = httpx.ASGITransport(app=create_app(gateway.rt, workers=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        yield c


@pytest.fixture
async def smtp_in(gateway: Gateway, smtp_server: SmtpServer) -> AsyncIterator[int]:  # noqa: F811
    """The SMTP receiver on a free port (``[fax_mail]``), ``[smtp]`` at the relay."""
    settings = FaxMailSettings(domain=DOMAIN, subject=None, max_message_bytes=5_000_000)
    configure(gateway.rt, settings)
    use_relay(gateway.rt, smtp_server.port)
    port = free_port()
    server = await receiver.start(gateway.rt, settings, listen=("127.0.0.1", port))
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


async def converted_tiff(gw: Gateway, msg: Message) -> Path:
    """The TIFF-F the conversion stored for ``msg``."""
    att = await gw.rt.store.get_attachment(msg.meta["fax"]["tiff"])
    assert att is not None and att.content_type == "image/tiff"
    return gw.rt.blobs.path(att.sha256)


async def statuses(gw: Gateway, message_id: str) -> list[str]:
    """The message's statuses as its events tell them (created, then each change)."""
    out = []
    for event in await gw.rt.store.list_events(0, 1000):
        if event.type in (MESSAGE_CREATED, MESSAGE_STATUS) and event.data["id"] == message_id:
            out.append(str(event.data["status"]))
    return out


def body_of(email: EmailMessage) -> str:
    part = email.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def api_fax(gw: Gateway, client: httpx.AsyncClient, *, short: bool = False) -> str:
    """A 2-page PDF with a text page and a cover (4 pages; ``short``: a 1-page PDF alone),
    sent through ``POST /v1/messages``."""
    pdf_id = await upload(client, gw.seed.team_key, samples.pdf(1 if short else 2),
                          "application/pdf")  # fmt: skip
    body: dict[str, object] = {"channel": "fax", "from": FAX_A, "to": REMOTE,
                               "attachments": [pdf_id]}  # fmt: skip
    if not short:
        body["text"] = "Bitte beide Seiten."
        body["cover"] = {"to": "Kanzlei Meier", "from": "Anna", "subject": "Vertrag"}
    sent = await client.post("/v1/messages", json=body, headers=auth(gw.seed.anna_key))
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "accepted"
    return str(sent.json()["id"])


async def check_sent(gw: Gateway, client: httpx.AsyncClient, message_id: str,
                     n: int = 4) -> None:  # fmt: skip
    """What a fax of ``n`` pages sent through the API shows: statuses, meta, events, the
    unit, the pages the simulator received."""
    msg = await gw.message(message_id)
    assert msg.status == "sent", msg.error
    assert await statuses(gw, message_id) == ["accepted", "queued", "sending", "sent"]
    fax = msg.meta["fax"]
    assert fax["pages"] == n and fax["pages_sent"] == n  # cover + text + 2 PDF pages
    assert fax["report"]["result"] == "OK" and fax["report"]["pages"] == n
    assert fax["report"]["remote_csi"] == "REMOTE FAX"
    for key in ("tiff", "pdf", "thumbnail"):
        assert fax[key] in msg.attachments
    view = (await client.get(f"/v1/messages/{message_id}", headers=auth(gw.seed.anna_key))).json()
    assert view["fax"]["pages"] == n and view["fax"]["pages_sent"] == n
    assert view["fax"]["report"]["result"] == "OK" and "next_try" not in view["fax"]
    pages = [e.data for e in await gw.rt.store.list_events(0, 1000) if e.type == FAX_PAGE]
    assert [(p["page"], p["pages"]) for p in pages] == [(k, n) for k in range(1, n + 1)]
    assert await used_units(gw.rt, gw.seed) == 1
    [got] = gw.sim.received
    assert got.ok and got.number == REMOTE and got.tiff is not None
    (gw.tmp / "rx.tif").write_bytes(got.tiff)
    assert_same_pages(await converted_tiff(gw, msg), gw.tmp / "rx.tif")


async def test_api_fax_is_converted_and_sent_to_the_simulator(
    gateway: Gateway,  # noqa: F811
    client: httpx.AsyncClient,
) -> None:
    message_id = await api_fax(gateway, client)
    await run_jobs(gateway.rt)
    await check_sent(gateway, client, message_id)


@pytest.mark.parametrize("gateway", [{"real_time": True}], indirect=True)
async def test_api_fax_in_real_time(gateway: Gateway, client: httpx.AsyncClient) -> None:  # noqa: F811
    """The same with the media paced by the wall clock (the real ``sip_t38`` kind), one
    page (about 8 s of line time)."""
    message_id = await api_fax(gateway, client, short=True)
    await run_jobs(gateway.rt)
    await check_sent(gateway, client, message_id, 1)


async def test_email_to_fax_with_status_mails(
    gateway: Gateway,  # noqa: F811
    smtp_in: int,
    smtp_server: SmtpServer,
) -> None:
    refused = await send(smtp_in, mail(to=f"{REMOTE.lstrip('+')}@{DOMAIN}", pdf=samples.pdf(2)))
    assert refused == {}
    await run_all(gateway.rt)
    page = await gateway.rt.store.list_messages(
        MessageFilter(gateway.seed.team.id, channel="fax"), None, 10
    )
    [fax] = page.items
    assert fax.status == "sent" and fax.to == REMOTE and fax.meta["fax"]["pages"] == 3
    [got] = gateway.sim.received
    assert got.ok and got.tiff is not None
    (gateway.tmp / "rx.tif").write_bytes(got.tiff)
    assert_same_pages(await converted_tiff(gateway, fax), gateway.tmp / "rx.tif")
    accepted, sent = (m.message for m in smtp_server.received)
    assert str(accepted["Subject"]) == f"Fax to {REMOTE} accepted (3 pages)"
    assert str(sent["Subject"]) == f"Fax to {REMOTE} sent (3 pages)"
    text = body_of(sent)
    assert "Remote station (CSI): REMOTE FAX" in text and "Result: OK" in text
    html = sent.get_body(preferencelist=("html",))
    assert html is not None and 'src="cid:' in str(html.get_content())
    inline = [p for p in sent.walk() if p.get_content_type() == "image/png"]
    assert len(inline) == 1 and inline[0]["Content-ID"]
    [pdf] = [p for p in sent.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_content().startswith(b"%PDF")
    assert all(m.rcpt_tos == ["anna@example.com"] for m in smtp_server.received)


async def test_a_busy_line_mails_not_sent_yet_with_the_next_try(
    gateway: Gateway,  # noqa: F811
    smtp_in: int,
    smtp_server: SmtpServer,
    client: httpx.AsyncClient,
) -> None:
    gateway.sim.behaviour.busy = True
    await send(smtp_in, mail(to=f"{REMOTE}@{DOMAIN}", pdf=samples.pdf(1)))
    await run_all(gateway.rt)
    page = await gateway.rt.store.list_messages(
        MessageFilter(gateway.seed.team.id, channel="fax"), None, 10
    )
    [fax] = page.items
    assert fax.status == "queued"
    # The move back to queued is the retry's event: it says why and when.
    [event] = [e for e in await gateway.rt.store.list_events(0, 1000)
               if e.type == MESSAGE_STATUS and e.data["status"] == "queued"
               and e.data.get("fax", {}).get("next_try")]  # fmt: skip
    assert event.data["fax"]["retry_reason"] == "the line was busy"
    assert event.data["fax"]["next_try"] == "2026-03-15T12:03:00.000Z"
    view = (await client.get(f"/v1/messages/{fax.id}", headers=auth(gateway.seed.anna_key)))
    assert view.json()["fax"]["next_try"] == "2026-03-15T12:03:00.000Z"
    accepted, retry = (m.message for m in smtp_server.received)
    assert "accepted" in str(accepted["Subject"])
    assert str(retry["Subject"]) == f"Fax to {REMOTE} not sent yet"
    text = body_of(retry)
    assert "was not sent yet: the line was busy." in text
    assert "Next try: 2026-03-15 13:03 (Europe/Berlin)." in text
    # Still busy at the next try: a second mail, for that retry.
    gateway.clock.advance(seconds=180)
    await run_all(gateway.rt)
    assert [str(m.message["Subject"]) for m in smtp_server.received][2:] == [
        f"Fax to {REMOTE} not sent yet"]
    assert "Next try: 2026-03-15 13:06" in body_of(smtp_server.received[2].message)
    gateway.sim.behaviour.busy = False
    gateway.clock.advance(seconds=180)
    await run_all(gateway.rt)
    msg = await gateway.message(fax.id)
    assert msg.status == "sent" and "next_try" not in (await client.get(
        f"/v1/messages/{fax.id}", headers=auth(gateway.seed.anna_key))).json()["fax"]
    last = str(smtp_server.received[-1].message["Subject"])
    assert last == f"Fax to {REMOTE} sent (2 pages)"  # the note's page + the PDF
    assert len(smtp_server.received) == 4


async def test_a_received_fax_is_mailed_as_pdf(
    gateway: Gateway,  # noqa: F811
    smtp_server: SmtpServer,
    tmp_path: Path,
) -> None:
    use_relay(gateway.rt, smtp_server.port)
    tiff = make_tiff(tmp_path / "in.tif", pages=2)
    result, _ = await gateway.sim.send_fax(FAX_A, tiff, caller=CALLER)
    assert result is not None and result.success
    flt = MessageFilter(gateway.seed.team.id, direction="inbound")
    async with asyncio.timeout(20):
        while not (await gateway.rt.store.list_messages(flt, None, 10)).items:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    await run_jobs(gateway.rt)
    [msg] = (await gateway.rt.store.list_messages(flt, None, 10)).items
    assert (msg.channel, msg.from_, msg.to, msg.status) == ("fax", CALLER, FAX_A, "received")
    fax = msg.meta["fax"]
    assert fax["pdf"] in msg.attachments and fax["thumbnail"] in msg.attachments
    assert_same_pages(tiff, await converted_tiff(gateway, msg))  # the pages as received
    [mailed] = smtp_server.received
    assert mailed.rcpt_tos == ["anna@example.com"]
    subject = str(mailed.message["Subject"])
    assert CALLER in subject and "REMOTE FAX" in subject and "2 pages" in subject
    [pdf] = [p for p in mailed.message.iter_attachments()
             if p.get_content_type() == "application/pdf"]  # fmt: skip
    assert pdf.get_content().startswith(b"%PDF")
