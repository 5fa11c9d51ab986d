"""End to end through the real WhatsApp Cloud API connector, on both store backends.

The gateway is served by uvicorn on a free loopback port with a ``whatsapp_cloud``
connector talking to the local Graph API simulator, which posts signed webhooks to the
gateway, and a fake SMS connector for the fallback. Jobs are run by hand, statuses are
posted when the test flushes the simulator, and the clock is frozen (24 hours pass when
the test says so).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import connectors.whatsapp.cloud  # noqa: F401  (registers kind "whatsapp_cloud")
from connectors.whatsapp.simulator import WhatsAppSimulator
from connectors.whatsapp.webhook import sign
from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.models import Message
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.serving import serving
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import MOBILE_A, Seed, auth, seed_directory

pytestmark = pytest.mark.anyio

PNID = "106540352242922"
BUSINESS = MOBILE_A  # Anna's mobile is the WhatsApp business number
USER = "+4917612345678"
PERIOD = "2026-03"


@dataclass
class E2E:
    """The gateway, its HTTP client, the simulator, and the seeded team."""

    rt: Runtime
    seed: Seed
    client: httpx.AsyncClient
    sim: WhatsAppSimulator

    @property
    def sms(self) -> FakeConnector:
        """The fake SMS connector (the fallback's carrier)."""
        conn = self.rt.connectors["sms"].connector
        assert isinstance(conn, FakeConnector)
        return conn

    @property
    def key(self) -> dict[str, str]:
        """Anna's API key header."""
        return auth(self.seed.anna_key)

    async def run_jobs(self) -> int:
        """Run due jobs until none is left."""
        n = 0
        while await worker(self.rt).run_once():
            n += 1
        return n

    async def reply(self, **extra: Any) -> dict[str, Any]:
        """POST a WhatsApp answer to the user; the 202 body."""
        body = {"channel": "whatsapp", "from": BUSINESS, "to": USER, "text": "Ja, morgen!"}
        resp = await self.client.post("/v1/messages", json={**body, **extra}, headers=self.key)
        assert resp.status_code == 202, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def message(self, message_id: str) -> dict[str, Any]:
        """GET one message (with its history)."""
        resp = await self.client.get(f"/v1/messages/{message_id}", headers=self.key)
        assert resp.status_code == 200, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def stored(self, message_id: str) -> Message:
        """The stored message."""
        msg = await self.rt.store.get_message(message_id)
        assert msg is not None
        return msg

    async def inbound(self) -> list[dict[str, Any]]:
        """The inbound messages Anna sees, newest first."""
        resp = await self.client.get("/v1/messages?direction=inbound", headers=self.key)
        data: list[dict[str, Any]] = resp.json()["data"]
        return data

    async def window(self) -> dict[str, Any]:
        """The WhatsApp window of the conversation with the user."""
        resp = await self.client.get("/v1/conversations", headers=self.key)
        [conv] = resp.json()["data"]
        window: dict[str, Any] = conv["whatsapp_window"]
        return window

    async def usage(self) -> dict[str, int]:
        """Anna's units this month by channel (lines with units only)."""
        lines, _ = await self.rt.store.ledger(self.seed.team.id, PERIOD)
        return {
            ln.channel: ln.used for ln in lines if ln.member_id == self.seed.anna.id and ln.used
        }


@pytest.fixture
async def sim(clock: FrozenClock) -> AsyncIterator[WhatsAppSimulator]:
    """Meta's Graph API on a free port; statuses are posted on ``flush()`` only."""
    simulator = WhatsAppSimulator(numbers={BUSINESS: PNID}, clock=clock, auto_status=False)
    async with simulator:
        yield simulator


@pytest.fixture
async def e2e(
    url: str, tmp_path: Path, clock: FrozenClock, sim: WhatsAppSimulator
) -> AsyncIterator[E2E]:
    """The gateway (store of the backend under test) served for real, posted to by ``sim``."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    configs = (
        ConnectorConfig("wa", "whatsapp_cloud", frozenset({"whatsapp"}), None, {
            **sim.connector_options(), "throughput": 1000,
        }),
        ConnectorConfig("sms", "fake", frozenset({"sms"}), None, {}),
    )  # fmt: skip
    rt = await open_runtime(dataclasses.replace(settings, connectors=configs), clock=clock)
    try:
        await rt.wait_started()
        seed = await seed_directory(rt, clock)
        async with serving(create_app(rt, workers=False)) as base:
            sim.webhook_url = f"{base}/hooks/wa/"
            async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
                yield E2E(rt, seed, client, sim)
    finally:
        await rt.aclose()


async def test_inbound_opens_the_window_and_the_reply_is_read(e2e: E2E, clock: FrozenClock) -> None:
    """Inbound WhatsApp → a conversation with an open window → reply → sent, delivered, read."""
    sim = e2e.sim
    clock.advance(seconds=0.7)  # Meta's timestamps are whole seconds
    wamid = await sim.inject_inbound(USER, BUSINESS, text="Kommt meine Bestellung heute?")
    assert sim.deliveries[-1].status_code == 200
    [inbound] = await e2e.inbound()
    assert (inbound["channel"], inbound["from"], inbound["to"]) == ("whatsapp", USER, BUSINESS)
    assert inbound["text"] == "Kommt meine Bestellung heute?" and inbound["status"] == "received"
    assert (await e2e.stored(inbound["id"])).carrier_id == wamid
    # The window runs from the message's own timestamp (12:00:00), not its arrival.
    assert await e2e.window() == {"open": True, "expires_at": "2026-03-16T12:00:00.000Z"}
    clock.advance(hours=23)
    sent = await e2e.reply()
    assert sent["channel"] == "whatsapp" and sent["conversation_id"] == inbound["conversation_id"]
    assert await e2e.run_jobs() == 1
    [request] = sim.sends
    assert request.type == "text" and request.payload["text"]["body"] == "Ja, morgen!"
    assert request.to == USER.lstrip("+") and request.wamid is not None
    assert (await e2e.stored(sent["id"])).carrier_id == request.wamid
    posted = await sim.flush()
    assert [d.status_code for d in posted] == [200, 200, 200]
    got = await e2e.message(sent["id"])
    assert got["status"] == "read"
    assert [h["status"] for h in got["history"]] == [
        "accepted", "sending", "sent", "delivered", "read"
    ]  # fmt: skip
    assert await e2e.usage() == {"whatsapp": 1}


async def test_closed_window_is_refused_or_sent_by_sms(e2e: E2E, clock: FrozenClock) -> None:
    """24 hours later a free-form answer is refused before Meta is called; with the
    fallback it goes out by SMS; a template still goes by WhatsApp."""
    sim = e2e.sim
    await sim.inject_inbound(USER, BUSINESS, text="Hallo")
    clock.advance(hours=24)
    assert await e2e.window() == {"open": False, "expires_at": "2026-03-16T12:00:00.000Z"}
    body = {"channel": "whatsapp", "from": BUSINESS, "to": USER, "text": "Noch da?"}
    refused = await e2e.client.post("/v1/messages", json=body, headers=e2e.key)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "whatsapp_window_closed" and problem["fallback"] == "sms"
    assert "closed at 2026-03-16T12:00:00.000Z" in problem["detail"]
    assert '"fallback": "sms"' in problem["detail"]
    by_sms = await e2e.reply(fallback="sms")
    assert by_sms["channel"] == "sms" and by_sms["requested_channel"] == "whatsapp"
    assert by_sms["fallback_used"] == "sms" and by_sms["units"] == 1
    template = {"name": "order_update", "language": "de"}
    tpl = await e2e.client.post(
        "/v1/messages",
        json={"channel": "whatsapp", "from": BUSINESS, "to": USER, "template": template},
        headers=e2e.key,
    )
    assert tpl.status_code == 202, tpl.text
    assert await e2e.run_jobs() == 2
    assert [m.id for m in e2e.sms.sent] == [by_sms["id"]]
    [request] = sim.sends  # only the template reached Meta
    assert request.type == "template" and request.error is None
    assert request.payload["template"]["name"] == "order_update"
    assert request.payload["template"]["language"] == {"code": "de"}
    await sim.flush()
    assert (await e2e.message(tpl.json()["id"]))["status"] == "read"
    assert (await e2e.message(by_sms["id"]))["status"] == "sent"
    assert await e2e.usage() == {"sms": 1, "whatsapp": 1}


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_meta_refuses_131047_all_the_same(e2e: E2E, mode: str) -> None:
    """Our window is open but Meta's is not (say, clocks disagree): Meta answers 131047 —
    in a ``failed`` status webhook as it does, or at once. With the fallback the message
    is re-issued as SMS (WhatsApp unit back, SMS unit charged); without it, it fails."""
    sim = e2e.sim
    await sim.inject_inbound(USER, BUSINESS, text="Hallo")
    sim.last_inbound.clear()
    sim.window_errors = mode
    falls = await e2e.reply(fallback="sms")
    plain = await e2e.reply(text="ohne Fallback")
    assert falls["channel"] == plain["channel"] == "whatsapp"
    await e2e.run_jobs()
    await sim.flush()  # async: the failed statuses (131047)
    await e2e.run_jobs()  # async: the re-issued SMS
    moved = await e2e.message(falls["id"])
    assert moved["channel"] == "sms" and moved["status"] == "sent"
    assert moved["requested_channel"] == "whatsapp" and moved["fallback_used"] == "sms"
    assert moved["fallback_reason"] == "whatsapp_window_closed"
    history = [h["status"] for h in moved["history"]]
    expected = ["accepted", "sending", "queued", "sending", "sent"]
    if mode == "async":  # Meta took it first, then reported it failed
        expected = ["accepted", "sending", "sent", "queued", "sending", "sent"]
    assert history == expected
    assert [m.id for m in e2e.sms.sent] == [falls["id"]]
    failed = await e2e.message(plain["id"])
    assert failed["status"] == "failed" and failed["channel"] == "whatsapp"
    assert failed["error"]["code"] == "whatsapp_window_closed"
    assert failed["error"]["carrier_code"] == "131047"
    # Meta never billed either WhatsApp message; the SMS is charged. (A message Meta took
    # and then failed keeps its unit, as every failure after acceptance does.)
    units = {"sms": 1} if mode == "sync" else {"sms": 1, "whatsapp": 1}
    assert await e2e.usage() == units


@pytest.mark.parametrize("modes", [{"duplicates", "out_of_order"}, {"skip_delivered"}])
async def test_duplicate_and_reordered_webhooks(
    e2e: E2E, clock: FrozenClock, modes: set[str]
) -> None:
    """Meta re-sends and reorders: one inbound message per wamid, a window that never moves
    back, and one outbound message whose final status is ``read``."""
    sim = e2e.sim
    first = await sim.inject_inbound(USER, BUSINESS, text="eins", times=3)
    older = clock.now() - timedelta(hours=2)
    await sim.inject_inbound(USER, BUSINESS, text="vorher", at=older)
    inbound = await e2e.inbound()
    assert [m["text"] for m in inbound] == ["vorher", "eins"]
    assert (await e2e.stored(inbound[1]["id"])).carrier_id == first
    assert await e2e.window() == {"open": True, "expires_at": "2026-03-16T12:00:00.000Z"}
    sim.status_modes = set(modes)
    sent = await e2e.reply()
    await e2e.run_jobs()
    await sim.flush()
    await sim.flush()
    got = await e2e.message(sent["id"])
    assert got["status"] == "read"
    history = [h["status"] for h in got["history"]]
    assert history[-1] == "read" and len(history) == len(set(history))
    assert set(history) <= {"accepted", "sending", "sent", "delivered", "read"}
    events = [
        e.data["status"]
        for e in await e2e.rt.store.list_events(0, 1000)
        if e.type == "message.status" and e.data["id"] == sent["id"]
    ]
    assert events == history[1:]  # one event per change, none for a duplicate


async def test_bad_signature_is_refused_and_nothing_stored(e2e: E2E, clock: FrozenClock) -> None:
    """A wrong or missing X-Hub-Signature-256 → 401 and nothing stored; signed → stored."""
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": BUSINESS.lstrip("+"), "phone_number_id": PNID},
            "contacts": [{"profile": {"name": "Jürgen"}, "wa_id": USER.lstrip("+")}],
            "messages": [{
                "from": USER.lstrip("+"), "id": "wamid.HBgLNDkxNzYxMjM0NTY3OBUCABIYFA==",
                "timestamp": str(int(clock.now().timestamp())), "type": "text",
                "text": {"body": "Grüße"},
            }],
        }}]}],
    }  # fmt: skip
    body = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode()
    url = "/hooks/wa/"
    plain = {"Content-Type": "application/json"}
    for headers in (
        plain,
        {**plain, "X-Hub-Signature-256": sign("not-the-app-secret", body)},
        {**plain, "X-Hub-Signature-256": sign(e2e.sim.app_secret, body + b" ")},
    ):
        resp = await e2e.client.post(url, content=body, headers=headers)
        assert resp.status_code == 401
    assert await e2e.inbound() == []
    assert await e2e.rt.store.find_conversation(e2e.seed.team.id, BUSINESS, USER) is None
    assert await e2e.rt.store.list_events(0, 10) == []
    good = {**plain, "X-Hub-Signature-256": sign(e2e.sim.app_secret, body)}
    resp = await e2e.client.post(url, content=body, headers=good)
    assert resp.status_code == 200
    [msg] = await e2e.inbound()
    assert msg["text"] == "Grüße" and msg["from"] == USER
    assert await e2e.window() == {"open": True, "expires_at": "2026-03-16T12:00:00.000Z"}
