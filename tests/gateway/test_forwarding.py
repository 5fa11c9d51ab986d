"""Forwarding of inbound SMS and WhatsApp, end to end on both backends: the inbound
webhook of the fake connector, the forward jobs run by a worker, mail arriving at a real
aiosmtpd server, SMS forwards charged and sent through the fake connector."""

from __future__ import annotations

import dataclasses
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from connectors.base import InboundAttachment, InboundMessage
from gateway import forwarding
from gateway.clock import FrozenClock
from gateway.config import SmtpConfig
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Event, Member, Message
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from gateway.units import sms_info
from tests.conftest import free_port
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import CONTACT, MOBILE_A, MOBILE_B, Seed, auth
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio

FWD_1 = "+4916012345678"
FWD_2 = "+4917212345678"
FWD_3 = "+4917012345678"
SENDER = "gateway@acme.example"


# -- helpers -----------------------------------------------------------------------------
@pytest.fixture
def smtp() -> Any:
    """A plain SMTP server on a free loopback port."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def use_relay(rt: Runtime, port: int, **kw: Any) -> None:
    """Point the gateway's [smtp] relay at 127.0.0.1:port."""
    values: dict[str, Any] = {"starttls": False, "sender": SENDER}
    values.update(kw)
    rt.settings = dataclasses.replace(rt.settings, smtp=SmtpConfig("127.0.0.1", port, **values))


def fake(rt: Runtime) -> FakeConnector:
    connector = rt.connectors["fake1"].connector
    assert isinstance(connector, FakeConnector)
    return connector


async def set_rules(
    client: httpx.AsyncClient, seed: Seed, member: Member | None = None, **rules: Any
) -> dict[str, Any]:
    member = member or seed.anna
    resp = await client.put(
        f"/v1/members/{member.id}/forwarding", json=rules, headers=auth(seed.team_key)
    )
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def receive(client: httpx.AsyncClient, text: str, carrier_id: str = "in-1", **kw: str) -> str:
    """An inbound SMS through the fake connector's webhook; the stored message's id."""
    body = {"id": carrier_id, "from": CONTACT, "to": MOBILE_A, "text": text, **kw}
    resp = await client.post("/hooks/fake1/inbound", json=body)
    assert resp.status_code == 200, resp.text
    message_id: str = resp.json()["message_id"]
    return message_id


async def drain(rt: Runtime) -> int:
    """Run due jobs until none is left (bounded)."""
    for ran in range(50):
        if not await worker(rt).run_once():
            return ran
    raise AssertionError("jobs keep coming")


async def forward_events(rt: Runtime) -> list[Event]:
    return [e for e in await rt.store.list_events(0, 1000) if e.type.startswith("forward.")]


async def outbound(rt: Runtime, seed: Seed) -> list[Message]:
    flt = MessageFilter(seed.team.id, direction="outbound")
    return (await rt.store.list_messages(flt, None, 100)).items


async def sms_used(client: httpx.AsyncClient, seed: Seed) -> tuple[int, str]:
    """Anna's SMS units this month and the team's overage cost, as GET /v1/quota says."""
    quota = (await client.get("/v1/quota", headers=auth(seed.team_key))).json()
    [anna] = [m for m in quota["members"] if m["member_id"] == seed.anna.id]
    return anna["channels"]["sms"]["used"], quota["overage_cost"]


# -- email -------------------------------------------------------------------------------
async def test_inbound_sms_arrives_as_email(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer
) -> None:
    """Subject, body (text, local time, channel), headers; free of charge."""
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"])
    message_id = await receive(client, "Hallo Anna, bitte zurückrufen!")
    assert await drain(rt) == 1
    [got] = smtp.received
    mail = got.message
    assert got.mail_from == SENDER and got.rcpt_tos == ["anna.privat@example.com"]
    assert mail["Subject"] == f"SMS from {CONTACT} to Anna ({MOBILE_A})"
    assert mail["From"] == SENDER and mail["To"] == "anna.privat@example.com"
    assert mail["Auto-Submitted"] == "auto-forwarded"
    assert mail["X-Gateway-Message-Id"] == message_id
    assert mail["Message-ID"].startswith(f"<{message_id}.")
    assert mail["Message-ID"].endswith("@acme.example>")
    body = mail.get_content()
    assert "Hallo Anna, bitte zurückrufen!" in body
    # 12:00 UTC is 13:00 in Berlin in March.
    assert "Received: 2026-03-15 13:00:00 CET (Europe/Berlin)" in body
    assert "Channel: SMS" in body
    [event] = await forward_events(rt)
    assert event.type == forwarding.FORWARD_SENT and event.team_id == seed.team.id
    assert event.data["message_id"] == message_id and event.data["via"] == "email"
    assert event.data["to"] == "anna.privat@example.com"
    assert await sms_used(client, seed) == (0, "0.00")
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_email_over_starttls(
    client: httpx.AsyncClient,
    rt: Runtime,
    seed: Seed,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A relay that requires STARTTLS, its certificate checked against the CA that
    SSL_CERT_FILE names (as an operator would trust a private CA)."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    server = SmtpServer(starttls=server_ctx, password="relay-pw").start()
    try:
        use_relay(rt, server.port, starttls=True, username="gw", password="relay-pw")
        await set_rules(client, seed, email=["anna.privat@example.com"])
        await receive(client, "über TLS")
        await drain(rt)
        [got] = server.received
        assert got.tls and got.login == "gw"
        assert "über TLS" in got.message.get_content()
    finally:
        server.stop()


async def test_relay_down_is_retried_until_it_is_up(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """The forward waits in the queue (backoff) and goes out once the relay answers."""
    port = free_port()
    use_relay(rt, port)
    await set_rules(client, seed, email=["anna.privat@example.com"])
    await receive(client, "später")
    assert await worker(rt).run_once()
    assert (await rt.store.job_counts())["ready"] == 1
    assert not await worker(rt).run_once()  # backing off
    server = SmtpServer(port).start()
    try:
        clock.advance(seconds=5)
        assert await drain(rt) == 1
        [got] = server.received
        assert "später" in got.message.get_content()
    finally:
        server.stop()
    assert [e.type for e in await forward_events(rt)] == [forwarding.FORWARD_SENT]
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_relay_down_for_good_is_recorded(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """After job_max_attempts the forward gives up with a forward.failed event."""
    rt.settings = dataclasses.replace(rt.settings, job_max_attempts=2)
    use_relay(rt, free_port())
    await set_rules(client, seed, email=["anna.privat@example.com"])
    message_id = await receive(client, "niemand da")
    assert await worker(rt).run_once()
    clock.advance(seconds=5)
    assert await worker(rt).run_once()
    [event] = await forward_events(rt)
    assert event.type == forwarding.FORWARD_FAILED
    assert event.data["code"] == "smtp_unavailable" and event.data["message_id"] == message_id
    assert "gave up after 2 attempts" in event.data["reason"]
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_refused_address_fails_alone(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer
) -> None:
    """One job per target: a 5xx for one address is recorded, not retried, and the other
    address gets its mail once."""
    use_relay(rt, smtp.port)
    smtp.handler.rcpt_replies = {"gone@example.com": "550 5.1.1 no such user"}
    await set_rules(client, seed, email=["gone@example.com", "anna.privat@example.com"])
    await receive(client, "hallo")
    assert await drain(rt) == 2
    assert [r.rcpt_tos for r in smtp.received] == [["anna.privat@example.com"]]
    events = {e.data["to"]: e for e in await forward_events(rt)}
    failed = events["gone@example.com"]
    assert failed.type == forwarding.FORWARD_FAILED and failed.data["code"] == "smtp_rejected"
    assert failed.data["smtp_code"] == 550 and "no such user" in failed.data["reason"]
    assert events["anna.privat@example.com"].type == forwarding.FORWARD_SENT
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_no_relay_configured_is_recorded(rt: Runtime, seed: Seed) -> None:
    """Rules stored while a relay was configured, which is gone now: a clear record."""
    rules = forwarding.Rules(email=("anna.privat@example.com",))
    await rt.store.put_setting(forwarding.scope(seed.anna.id), rules.to_doc())
    msg = await Inbound(rt).inbound(
        InboundMessage("fake1", "sms", "in-9", CONTACT, MOBILE_A, "hi", rt.clock.now())
    )
    assert msg is not None
    await drain(rt)
    [event] = await forward_events(rt)
    assert event.type == forwarding.FORWARD_FAILED
    assert event.data["code"] == "smtp_not_configured"


# -- SMS ---------------------------------------------------------------------------------
async def test_sms_forwards_are_charged_per_recipient(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    """One outbound SMS per number from Anna's mobile, each charged for its own text:
    units x recipients, visible in GET /v1/quota; the fake connector sends them."""
    await set_rules(client, seed, sms=[FWD_1, "0172 12345678"])
    text = "Bitte um Rückruf wegen des Angebots. " * 4  # 148 characters
    message_id = await receive(client, text)
    await drain(rt)
    forwarded = f"Fwd {CONTACT}: {text}"
    assert len(forwarded) > 160  # two units, two segments each
    sent = fake(rt).sent
    assert sorted(m.to for m in sent) == sorted([FWD_1, FWD_2])
    assert {(m.from_, m.text, m.channel) for m in sent} == {(MOBILE_A, forwarded, "sms")}
    out = await outbound(rt, seed)
    assert {(m.status, m.units, m.segments, m.member_id) for m in out} == {
        ("sent", 2, sms_info(forwarded).segments, seed.anna.id)
    }
    assert await sms_used(client, seed) == (4, "0.00")
    events = await forward_events(rt)
    assert {e.data["to"] for e in events} == {FWD_1, FWD_2}
    assert all(e.type == forwarding.FORWARD_SENT for e in events)
    assert {e.data["forward_message_id"] for e in events} == {m.id for m in out}
    assert all(e.data["message_id"] == message_id and e.data["units"] == 2 for e in events)


async def test_credit_limit_refuses_forwards_past_it(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    """No included units, 5 EUR a unit, a 10 EUR limit: two forwards fit, the third is
    refused with a record — not queued, not retried, not charged."""
    tariff = rt.settings.tariff
    rt.settings = dataclasses.replace(
        rt.settings,
        tariff=dataclasses.replace(
            tariff,
            included={**tariff.included, "sms": 0},
            overage_price_micros={**tariff.overage_price_micros, "sms": 5_000_000},
        ),
    )
    await set_rules(client, seed, sms=[FWD_1, FWD_2, FWD_3])
    await receive(client, "kurz")
    await drain(rt)
    events = await forward_events(rt)
    sent = [e for e in events if e.type == forwarding.FORWARD_SENT]
    [refused] = [e for e in events if e.type == forwarding.FORWARD_FAILED]
    assert len(sent) == 2 and len(fake(rt).sent) == 2
    assert refused.data["code"] == "quota_credit_limit"
    assert refused.data["credit_limit_micros"] == 10_000_000
    assert refused.data["overage_micros"] == 10_000_000
    assert refused.data["to"] not in {m.to for m in fake(rt).sent}
    assert len(await outbound(rt, seed)) == 2
    assert await sms_used(client, seed) == (2, "10.00")
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_credit_limit_refusal_charges_nothing(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    """A single forward over the limit: nothing sent, nothing charged."""
    tariff = rt.settings.tariff
    rt.settings = dataclasses.replace(
        rt.settings,
        tariff=dataclasses.replace(
            tariff,
            included={**tariff.included, "sms": 0},
            overage_price_micros={**tariff.overage_price_micros, "sms": 100_000_000},
        ),
    )
    await set_rules(client, seed, sms=[FWD_1])
    await receive(client, "teuer")
    await drain(rt)
    [refused] = await forward_events(rt)
    assert refused.type == forwarding.FORWARD_FAILED
    assert refused.data["code"] == "quota_credit_limit"
    assert fake(rt).sent == [] and await outbound(rt, seed) == []
    assert await sms_used(client, seed) == (0, "0.00")


async def test_forward_job_run_twice_sends_once(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """A worker that dies after the forward was accepted but before its ack: the job
    runs again after the lease expires and finds its message instead of sending again."""
    await set_rules(client, seed, sms=[FWD_1])
    await receive(client, "einmal")
    job = await rt.store.lease_job(clock.now(), "doomed", timedelta(seconds=120))
    assert job is not None and job.kind == forwarding.JOB_KIND
    await forwarding.forward_job(rt, job)  # ... and the worker dies here, without the ack
    clock.advance(seconds=121)
    await drain(rt)  # the send job, and the forward job again
    assert len(fake(rt).sent) == 1
    assert len(await outbound(rt, seed)) == 1
    assert await sms_used(client, seed) == (1, "0.00")
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
    # Both runs say it went out (at least once), naming the one message.
    [out] = await outbound(rt, seed)
    events = await forward_events(rt)
    assert [e.data["forward_message_id"] for e in events] == [out.id, out.id]


async def test_missing_addon_is_refused_with_a_record(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """Rules stored before the member lost the sms add-on: the forward is refused and
    says why; the email forward of the same message still goes out."""
    carl = Member(
        new_id("mem"),
        seed.team.id,
        "Carl",
        "carl@example.com",
        "+4915212345673",
        None,
        frozenset(),
        True,
        clock.now(),
    )
    await rt.store.create_member(carl, 10)
    rules = forwarding.Rules(sms=(FWD_1,))
    await rt.store.put_setting(forwarding.scope(carl.id), rules.to_doc())
    msg = await Inbound(rt).inbound(
        InboundMessage("fake1", "sms", "in-c", CONTACT, carl.mobile or "", "hi", clock.now())
    )
    assert msg is not None
    await drain(rt)
    [event] = await forward_events(rt)
    assert event.type == forwarding.FORWARD_FAILED and event.data["code"] == "addon_missing"
    assert "sms add-on" in event.data["reason"] and event.data["member_id"] == carl.id
    assert fake(rt).sent == []


# -- which messages are forwarded ----------------------------------------------------------
async def test_duplicate_inbound_is_forwarded_once(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer
) -> None:
    """The carrier delivers the same message twice: one message, one set of forwards."""
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"], sms=[FWD_1])
    first = await receive(client, "doppelt", carrier_id="same")
    assert (await rt.store.job_counts())["ready"] == 2
    again = await receive(client, "doppelt", carrier_id="same")
    assert again == first
    assert (await rt.store.job_counts())["ready"] == 2
    await drain(rt)
    assert len(smtp.received) == 1 and len(fake(rt).sent) == 1


async def test_whatsapp_inbound_is_forwarded_with_its_media(
    client: httpx.AsyncClient,
    rt: Runtime,
    seed: Seed,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """WhatsApp is forwarded too: media attached to the mail up to the size cap (the rest
    named with their link); the SMS forward names the media types."""
    monkeypatch.setattr(forwarding, "MAX_EMAIL_ATTACHMENTS", 1000)
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"], sms=[FWD_1])
    photo = b"\xff\xd8\xff\xe0" + b"j" * 500
    big = b"%PDF-1.4 " + b"p" * 2000
    msg = await Inbound(rt).inbound(
        InboundMessage(
            "fake1",
            "whatsapp",
            "wamid.1",
            CONTACT,
            MOBILE_A,
            "Foto vom Termin",
            rt.clock.now(),
            attachments=[
                InboundAttachment("image/jpeg", photo, "termin.jpg"),
                InboundAttachment("application/pdf", big, "vertrag.pdf"),
            ],
        )
    )
    assert msg is not None and msg.channel == "whatsapp"
    await drain(rt)
    [got] = smtp.received
    mail = got.message
    assert mail["Subject"] == f"WhatsApp from {CONTACT} to Anna ({MOBILE_A})"
    parts = list(mail.iter_attachments())
    assert [(p.get_filename(), p.get_content_type()) for p in parts] == [
        ("termin.jpg", "image/jpeg")
    ]
    assert parts[0].get_content() == photo
    body = mail.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Channel: WhatsApp" in text and "Foto vom Termin" in text
    assert "vertrag.pdf (application/pdf, 2009 bytes): too large" in text
    assert f"/v1/attachments/{msg.attachments[1]}/content" in text
    [sms] = fake(rt).sent
    assert sms.text == f"Fwd WhatsApp {CONTACT}: Foto vom Termin [image/jpeg] [application/pdf]"


async def test_channels_and_enabled_decide(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer
) -> None:
    """Only the listed channels are forwarded; disabled rules forward nothing."""
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"], channels=["whatsapp"])
    await receive(client, "sms bleibt", carrier_id="s1")
    assert (await rt.store.job_counts())["ready"] == 0
    await receive(client, "whatsapp geht", carrier_id="w1", channel="whatsapp")
    assert (await rt.store.job_counts())["ready"] == 1
    await set_rules(client, seed, email=["anna.privat@example.com"], enabled=False)
    await receive(client, "aus", carrier_id="s2")
    await receive(client, "aus", carrier_id="w2", channel="whatsapp")
    assert (await rt.store.job_counts())["ready"] == 1
    await drain(rt)
    assert ["whatsapp geht" in r.message.get_content() for r in smtp.received] == [True]


async def test_no_loops_and_nothing_back_to_the_sender(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer
) -> None:
    """A forward sent by another member's number is not forwarded by SMS again (two
    members forwarding to each other would loop); nor is a message sent back to its own
    sender. Email forwards still happen."""
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"], sms=[MOBILE_B, CONTACT])
    body = {"id": "loop", "from": MOBILE_B, "to": MOBILE_A, "text": f"Fwd {CONTACT}: hi"}
    assert (await client.post("/hooks/fake1/inbound", json=body)).status_code == 200
    await receive(client, "von mir", carrier_id="self")
    jobs = (await rt.store.job_counts())["ready"]
    # Two emails; SMS only for the second message, and only to Ben.
    assert jobs == 3
    await drain(rt)
    assert [(m.to, m.text) for m in fake(rt).sent] == [(MOBILE_B, f"Fwd {CONTACT}: von mir")]
    assert len(smtp.received) == 2


async def test_forwards_survive_the_process(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, smtp: SmtpServer, clock: FrozenClock
) -> None:
    """The forward is in the store with the message: another gateway process (a worker
    that never saw the inbound request) sends it."""
    use_relay(rt, smtp.port)
    await set_rules(client, seed, email=["anna.privat@example.com"])
    await receive(client, "dauerhaft")
    other = await open_runtime(rt.settings, clock=clock)
    try:
        await other.wait_started()
        assert await drain(other) == 1
    finally:
        await other.aclose()
    [got] = smtp.received
    assert "dauerhaft" in got.message.get_content()


def test_sms_text_is_cut_to_one_outbound_sms() -> None:
    """Long texts are cut to the SMS maximum with a GSM-7 marker (no UCS-2 '…')."""
    at = datetime(2026, 3, 15, tzinfo=UTC)
    msg = Message(
        "msg_X", "team_X", "mem_X", "conv_X", "whatsapp", "inbound", CONTACT, MOBILE_A,
        "a" * 5000, [], "received", 0, 1, None, at, at,
    )  # fmt: skip
    text = forwarding.sms_text(msg, [])
    assert len(text) == 1600 and text.endswith("aaa...")
    assert text.startswith(f"Fwd WhatsApp {CONTACT}: aaa")
    assert sms_info(text).encoding == "gsm7"
