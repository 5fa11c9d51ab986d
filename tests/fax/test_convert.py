"""The fax API end to end through the fax extension's jobs: conversion before the send,
the unit given back on a conversion or permanent transmission failure, and a received
fax turned into a PDF and mailed (aiosmtpd as the relay). Channel fax is served by the
test connector (``tests/connectors/fake.py``, connector ``faxfake``)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from connectors.base import InboundAttachment, InboundMessage
from fax import convert
from fax.render import render_document
from fax.tiff import pages as tiff_pages
from gateway.clock import FrozenClock
from gateway.inbound import Inbound
from gateway.models import Message
from gateway.process import worker
from gateway.quota import period_of
from gateway.runtime import Runtime
from tests.connectors.fake import FakeConnector
from tests.fax import samples
from tests.gateway.api.test_policy import put as put_policy
from tests.gateway.conftest import FAX_A, Seed, auth
from tests.gateway.test_forwarding import use_relay
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio
TO = "+4940123456"


def faxfake(rt: Runtime) -> FakeConnector:
    connector = rt.connectors["faxfake"].connector
    assert isinstance(connector, FakeConnector)
    return connector


async def upload(client: httpx.AsyncClient, key: str, data: bytes, ctype: str) -> str:
    up = await client.post(
        "/v1/attachments", files={"file": ("doc", data, ctype)}, headers=auth(key)
    )
    assert up.status_code == 201, up.text
    return str(up.json()["id"])


async def run_jobs(rt: Runtime) -> None:
    w = worker(rt)
    while await w.run_once():
        pass


async def used_units(rt: Runtime, seed: Seed) -> int:
    lines, _ = await rt.store.ledger(seed.team.id, period_of(rt.clock.now(), rt.settings.tz))
    return sum(line.used for line in lines if line.channel == "fax")


async def message(rt: Runtime, message_id: str) -> Message:
    msg = await rt.store.get_message(message_id)
    assert msg is not None
    return msg


async def test_fax_api_converts_then_sends(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    pdf_id = await upload(client, seed.team_key, samples.pdf(2), "application/pdf")
    png_id = await upload(client, seed.team_key, samples.image("PNG"), "image/png")
    body = {
        "channel": "fax", "from": FAX_A, "to": TO, "text": "Please sign both pages.",
        "attachments": [pdf_id, png_id],
        "cover": {"to": "Kanzlei Meier", "from": "Anna", "subject": "Vertrag", "note": "Eilt"},
    }  # fmt: skip
    sent = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert sent.status_code == 202, sent.text
    view = sent.json()
    assert view["status"] == "accepted" and view["units"] == 1
    job = (await rt.store.list_jobs("ready", None, 10))[0]
    assert job.kind == convert.CONVERT  # the preparation job, not "send"
    assert await worker(rt).run_once()
    msg = await message(rt, view["id"])
    section = msg.meta["fax"]
    # cover 1 + text 1 + PDF 2 + image 1
    assert msg.status == "queued" and section["pages"] == 5 and section["pages_sent"] == 0
    assert section["cover"]["subject"] == "Vertrag"
    for key in ("tiff", "pdf", "thumbnail"):
        assert section[key] in msg.attachments
    tiff_att = await rt.store.get_attachment(section["tiff"])
    assert tiff_att is not None and tiff_att.content_type == "image/tiff"
    assert len(tiff_pages(rt.blobs.get(tiff_att.sha256))) == 5
    got = await client.get(f"/v1/attachments/{section['pdf']}/content", headers=auth(seed.anna_key))
    assert got.content.startswith(b"%PDF")
    # The send job the conversion queued hands the TIFF to the connector.
    assert await worker(rt).run_once()
    out = faxfake(rt).sent[-1]
    assert section["tiff"] in [a.id for a in out.attachments]
    assert (await message(rt, view["id"])).status == "sent"
    assert await used_units(rt, seed) == 1
    # Running the conversion again (a worker that died before its ack) changes nothing.
    await convert.convert_job(rt, job)
    assert not await worker(rt).run_once()


async def test_conversion_failure_gives_the_unit_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    bad = await upload(client, seed.team_key, samples.pdf(1, encrypt="secret"), "application/pdf")
    body = {"channel": "fax", "from": FAX_A, "to": TO, "attachments": [bad]}
    sent = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert sent.status_code == 202
    assert await used_units(rt, seed) == 1
    await run_jobs(rt)
    msg = await message(rt, sent.json()["id"])
    assert msg.status == "failed" and msg.error is not None
    assert msg.error["code"] == "content_invalid" and "password" in str(msg.error["message"])
    assert await used_units(rt, seed) == 0
    assert faxfake(rt).sent == []


async def test_permanent_transmission_failure_gives_the_unit_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    faxfake(rt).script = ["permanent"]
    body = {"channel": "fax", "from": FAX_A, "to": TO, "text": "Hallo"}
    sent = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    await run_jobs(rt)
    msg = await message(rt, sent.json()["id"])
    assert msg.status == "failed" and msg.meta["fax"]["pages"] == 1
    assert await used_units(rt, seed) == 0


async def test_destination_rules_apply_to_fax(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    body = {"channel": "fax", "from": FAX_A, "to": TO, "text": "Hallo"}
    await put_policy(client, seed, {"blocked_prefixes": ["+4940"]})
    refused = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert refused.status_code == 403 and "+4940" in refused.json()["detail"], refused.text
    await put_policy(client, seed, {"blocked_prefixes": [], "countries": ["DE"]})
    abroad = {**body, "to": "+442079460958"}
    refused = await client.post("/v1/messages", json=abroad, headers=auth(seed.anna_key))
    assert refused.status_code == 403 and refused.json()["code"] == "destination_blocked", (
        refused.text
    )
    assert await used_units(rt, seed) == 0
    sent = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert sent.status_code == 202


async def test_received_fax_becomes_pdf_and_mail(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp_server: SmtpServer, clock: FrozenClock
) -> None:
    use_relay(rt, smtp_server.port)
    rules = {"email": ["office@example.org"]}
    put = await client.put(
        f"/v1/members/{seed.anna.id}/forwarding", json=rules, headers=auth(seed.team_key)
    )
    assert put.status_code == 200, put.text
    pages = render_document(samples.pdf(2), "application/pdf").tiff
    report: dict[str, Any] = {"pages": 2, "remote_csi": "+49 40 999", "bit_rate": 14400}
    inbound = InboundMessage(
        "faxfake", "fax", "call-1", "+494099999", FAX_A, None, clock.now(),
        attachments=[InboundAttachment("image/tiff", pages, filename="fax.tif")],
        meta={"fax": {"pages": 2, "report": report}},
    )  # fmt: skip
    stored = await Inbound(rt).inbound(inbound)
    assert stored is not None
    assert await Inbound(rt).inbound(inbound) is not None  # the carrier delivers it again
    jobs = await rt.store.list_jobs("ready", None, 10)
    assert [j.kind for j in jobs] == [convert.RECEIVED]  # written with the message, once
    assert await worker(rt).run_once()
    msg = await message(rt, stored.id)
    assert msg.meta["fax"]["pdf"] in msg.attachments
    # The conversation with the fax number holds received and sent faxes alike.
    reply = {"channel": "fax", "from": FAX_A, "to": "+494099999", "text": "Antwort"}
    sent = await client.post("/v1/messages", json=reply, headers=auth(seed.anna_key))
    assert sent.json()["conversation_id"] == msg.conversation_id
    assert msg.meta["fax"]["thumbnail"] in msg.attachments
    assert len(smtp_server.received) == 1
    mail = smtp_server.received[0]
    assert sorted(mail.rcpt_tos) == ["anna@example.com", "office@example.org"]
    email: EmailMessage = mail.message
    subject = str(email["Subject"])
    assert "+494099999" in subject and "+49 40 999" in subject and "2 pages" in subject
    assert "Bcc" not in email
    names = [p.get_filename() for p in email.iter_attachments()]
    pdf_part = next(
        p for p in email.iter_attachments() if p.get_content_type() == "application/pdf"
    )
    assert pdf_part.get_content().startswith(b"%PDF") and any(
        n and n.endswith(".pdf") for n in names
    )
    body = email.get_body(preferencelist=("plain",))
    assert body is not None and "Pages: 2" in body.get_content()


async def test_received_fax_mail_retried_while_relay_is_down(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    server = SmtpServer()
    use_relay(rt, server.port)  # nothing listens there yet
    pages = render_document(samples.pdf(1), "application/pdf").tiff
    inbound = InboundMessage(
        "faxfake", "fax", "call-2", "+494099999", FAX_A, None, clock.now(),
        attachments=[InboundAttachment("image/tiff", pages, filename="fax.tif")],
        meta={"fax": {"pages": 1}},
    )  # fmt: skip
    stored = await Inbound(rt).inbound(inbound)
    assert stored is not None
    assert await worker(rt).run_once()
    job = (await rt.store.list_jobs("ready", None, 10))[0]
    assert job.kind == convert.RECEIVED and job.attempts == 1 and job.run_at > clock.now()
    server.start()
    try:
        clock.advance(seconds=3600)
        assert await worker(rt).run_once()
        assert len(server.received) == 1
    finally:
        server.stop()


async def test_a_renderer_in_trouble_is_retried_then_fails_with_the_unit_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("the sandbox is gone")

    monkeypatch.setattr(convert, "render_message", broken)
    body = {"channel": "fax", "from": FAX_A, "to": TO, "text": "Hallo"}
    sent = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    [job] = await rt.store.list_jobs("ready", None, 10)
    job.attempts = 1
    with pytest.raises(RuntimeError):
        await convert.convert_job(rt, job)  # the worker retries it with backoff
    assert (await message(rt, sent.json()["id"])).status == "accepted"
    job.attempts = job.max_attempts
    await convert.convert_job(rt, job)
    msg = await message(rt, sent.json()["id"])
    assert msg.status == "failed" and msg.error is not None
    assert "could not be converted (RuntimeError)" in str(msg.error["message"])
    assert await used_units(rt, seed) == 0
