"""The twilio connector inside a served gateway, on both backends: callbacks, inbound SMS,
refused webhooks, the proxy case, and one end-to-end run with real workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.http_sms import signature
from connectors.http_sms.simulator import Simulator, serving
from connectors.http_sms.twilio import TWIML_EMPTY, TwilioConnector
from gateway.api.app import create_app
from gateway.clock import Clock, FrozenClock, SystemClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.models import Message
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from tests.conftest import free_port
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth, seed_directory

pytestmark = pytest.mark.anyio


@dataclass
class Gateway:
    """A served gateway with a twilio connector, its carrier and a seeded team."""

    rt: Runtime
    sim: Simulator
    seed: Seed
    internal_url: str
    public_url: str
    client: httpx.AsyncClient

    async def send(self, text: str = "Hallo", to: str = CONTACT) -> dict[str, Any]:
        body = {"channel": "sms", "from": MOBILE_A, "to": to, "text": text}
        resp = await self.client.post("/v1/messages", json=body, headers=auth(self.seed.team_key))
        assert resp.status_code == 202, resp.text
        data: dict[str, Any] = resp.json()
        return data

    async def message(self, message_id: str) -> Message:
        msg = await self.rt.store.get_message(message_id)
        assert msg is not None
        return msg


@contextlib.asynccontextmanager
async def running_gateway(
    store_url: str,
    tmp_path: Path,
    clock: Clock,
    *,
    public_url: str | None = None,
    workers: bool = False,
    delays: tuple[float, float] = (0.01, 0.01),
) -> AsyncIterator[Gateway]:
    """Carrier simulator + runtime (twilio connector) + the app served by uvicorn."""
    port = free_port()
    internal = f"http://127.0.0.1:{port}"
    public = public_url or internal
    async with Simulator(callback_delays=delays, inbound_url=f"{public}/hooks/tw1/inbound") as sim:
        settings = parse_settings(
            {
                "gateway": {
                    "store": store_url,
                    "blobs": str(tmp_path / "blobs"),
                    "public_url": public,
                    "workers": 2,
                    "poll_interval": 0.05,
                }
            }
        )
        options = {
            "base_url": sim.base_url,
            "account_sid": sim.account_sid,
            "auth_token": sim.auth_token,
        }
        tw = ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, options)
        settings = dataclasses.replace(settings, connectors=(tw,))
        rt = await open_runtime(settings, clock=clock)
        try:
            await rt.wait_started()
            seed = await seed_directory(rt, FrozenClock(clock.now()))
            app = create_app(rt, workers=workers)
            async with (
                serving(app, port=port, lifespan="on") as served,
                httpx.AsyncClient(base_url=served, timeout=10.0) as client,
            ):
                yield Gateway(rt, sim, seed, served, public, client)
        finally:
            await rt.aclose()


@pytest.fixture
async def gw(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Gateway]:
    """A served gateway whose public URL is where it really listens."""
    async with running_gateway(url, tmp_path, clock) as g:
        yield g


@pytest.mark.parametrize(
    ("final", "error_code", "expected"),
    [
        ("delivered", None, ("delivered", None)),
        ("undelivered", 30005, ("failed", "invalid_number")),
        ("failed", 30007, ("failed", "blocked")),
    ],
)
async def test_status_callbacks_move_the_message(
    gw: Gateway, final: str, error_code: int | None, expected: tuple[str, str | None]
) -> None:
    gw.sim.deliver_next(1, final, error_code)
    gw.sim.pause_callbacks()  # the send is recorded before any callback can arrive
    sent = await gw.send("a" * 161)
    assert await worker(gw.rt).run_once()
    msg = await gw.message(sent["id"])
    [carrier] = gw.sim.sends
    assert msg.status == "sent" and msg.carrier_id == carrier.sid
    assert msg.segments == 2 and msg.meta["carrier_status"] == "queued"
    gw.sim.resume_callbacks()
    await gw.sim.settle()
    assert [c.status_code for c in gw.sim.callbacks] == [204] * len(gw.sim.callbacks)
    msg = await gw.message(sent["id"])
    assert msg.status == expected[0]
    if expected[1] is None:
        assert msg.error is None
    else:
        assert msg.error is not None
        assert msg.error["code"] == expected[1]
        assert msg.error["carrier_code"] == str(error_code)
    history = [h.status for h in await gw.rt.store.status_history(sent["id"])]
    # The carrier's "sent" is no news after the send: it does not add a row.
    assert history == ["accepted", "sending", "sent", expected[0]]
    # A repeated callback is harmless, and a late one never moves the status back.
    for again in (gw.sim.callbacks[-1], gw.sim.callbacks[0]):
        assert (await gw.sim.post_signed(again.url, again.params)).status_code == 204
    assert (await gw.message(sent["id"])).status == expected[0]
    assert len(await gw.rt.store.status_history(sent["id"])) == len(history)
    # Once the carrier accepted a message it is charged, whatever became of it.
    lines, _ = await gw.rt.store.ledger(gw.seed.team.id, "2026-03")
    assert sum(line.used for line in lines) == 2


async def test_inbound_sms_lands_in_the_members_conversation(gw: Gateway) -> None:
    out = await gw.send()
    answer = await gw.sim.inject_inbound(CONTACT, MOBILE_A, "Danke! 😀", sid="SM" + "a" * 32)
    assert answer.status_code == 200 and answer.text == TWIML_EMPTY
    again = await gw.sim.inject_inbound(CONTACT, MOBILE_A, "Danke! 😀", sid="SM" + "a" * 32)
    assert again.status_code == 200  # the carrier's retry: stored once
    inbox = await gw.client.get(
        f"/v1/messages?conversation_id={out['conversation_id']}", headers=auth(gw.seed.anna_key)
    )
    data = inbox.json()["data"]
    assert [(m["direction"], m["status"]) for m in data] == [
        ("inbound", "received"),
        ("outbound", "accepted"),
    ]
    received = await gw.message(data[0]["id"])
    assert (received.channel, received.from_, received.to, received.text) == (
        "sms",
        CONTACT,
        MOBILE_A,
        "Danke! 😀",
    )
    assert received.carrier_id == "SM" + "a" * 32 and received.units == 0
    assert received.connector_id == "tw1" and received.segments == 1
    events = [e for e in await gw.rt.store.list_events(0, 100) if e.type == "message.received"]
    assert [e.data["id"] for e in events] == [received.id]


async def test_refused_webhooks_store_nothing(gw: Gateway) -> None:
    params = {"MessageSid": "SM" + "b" * 32, "From": CONTACT, "To": MOBILE_A, "Body": "x"}
    url = f"{gw.public_url}/hooks/tw1/inbound"
    forged = signature.compute("not-the-token", url, params)
    cases = [
        ({"X-Twilio-Signature": forged}, params, 403),
        ({}, params, 403),
        ({"X-Twilio-Signature": signature.compute(gw.sim.auth_token, url, {})}, params, 403),
    ]
    for headers, data, status in cases:
        resp = await gw.client.post("/hooks/tw1/inbound", data=data, headers=headers)
        assert resp.status_code == status, resp.text
    as_json = await gw.client.post(
        "/hooks/tw1/inbound",
        json=params,
        headers={"X-Twilio-Signature": signature.compute(gw.sim.auth_token, url, params)},
    )
    assert as_json.status_code == 415
    listed = await gw.client.get("/v1/messages", headers=auth(gw.seed.team_key))
    assert listed.json()["data"] == []
    assert await gw.rt.store.list_events(0, 100) == []


async def test_public_url_behind_a_proxy(url: str, tmp_path: Path, clock: FrozenClock) -> None:
    public = "https://gw.example.com/base"
    async with running_gateway(url, tmp_path, clock, public_url=public) as g:
        connector = g.rt.connectors["tw1"].connector
        assert isinstance(connector, TwilioConnector)
        assert connector.status_callback_url == f"{public}/hooks/tw1/status"
        assert g.internal_url.startswith("http://127.0.0.1:")
        params = {"MessageSid": "SM" + "c" * 32, "From": CONTACT, "To": MOBILE_A, "Body": "hi"}
        path = "/hooks/tw1/inbound?src=edge"
        over_internal = signature.compute(g.sim.auth_token, g.internal_url + path, params)
        over_public = signature.compute(g.sim.auth_token, public + path, params)
        refused = await g.client.post(
            path, data=params, headers={"X-Twilio-Signature": over_internal}
        )
        assert refused.status_code == 403
        assert await g.rt.store.list_events(0, 100) == []
        ok = await g.client.post(path, data=params, headers={"X-Twilio-Signature": over_public})
        assert ok.status_code == 200, ok.text
        listed = (await g.client.get("/v1/messages", headers=auth(g.seed.team_key))).json()
        assert [m["text"] for m in listed["data"]] == ["hi"]
        assert (await g.message(listed["data"][0]["id"])).carrier_id == "SM" + "c" * 32


async def wait_for_status(g: Gateway, message_id: str, status: str) -> Message:
    """Poll the store until the message has ``status`` (bounded: at most ~20 s)."""
    for _ in range(400):
        msg = await g.message(message_id)
        if msg.status == status:
            break
        await asyncio.sleep(0.05)
    assert msg.status == status
    return msg


async def test_end_to_end_with_real_workers(url: str, tmp_path: Path) -> None:
    clock = SystemClock()
    async with running_gateway(url, tmp_path, clock, workers=True, delays=(0.05, 0.05)) as g:
        text = "Preis: 5€ " * 20  # GSM-7 with escapes: 220 septets, 2 segments
        # Callbacks wait until the worker has recorded the carrier's sid: a callback that
        # overtakes its send is the core's business (parked and retried), not this test's.
        g.sim.pause_callbacks()
        sent = await g.send(text)
        assert sent["status"] == "accepted" and sent["segments"] == 2
        msg = await wait_for_status(g, sent["id"], "sent")
        g.sim.resume_callbacks()
        msg = await wait_for_status(g, sent["id"], "delivered")
        [carrier] = g.sim.sends
        assert (carrier.to, carrier.from_, carrier.body) == (CONTACT, MOBILE_A, text)
        assert carrier.status_callback == f"{g.public_url}/hooks/tw1/status"
        assert msg.carrier_id == carrier.sid and carrier.segments == 2
        assert msg.segments == 2 and "carrier_segments" not in msg.meta
        got = await g.client.get(f"/v1/messages/{sent['id']}", headers=auth(g.seed.team_key))
        body = got.json()
        assert body["status"] == "delivered" and body["segments"] == 2
        statuses = [h["status"] for h in body["history"]]
        assert statuses[0] == "accepted" and statuses[-2:] == ["sent", "delivered"]
        await g.sim.settle()
        assert [c.params["MessageStatus"] for c in g.sim.callbacks] == ["sent", "delivered"]
        assert all(c.status_code == 204 for c in g.sim.callbacks)
