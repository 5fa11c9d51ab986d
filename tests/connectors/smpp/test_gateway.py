"""Through the whole gateway: API → worker → submit_sm → receipt → delivered; inbound SMS."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from connectors.smpp.connector import SmppConnector
from connectors.smpp.simulator import SmscSimulator
from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from tests.connectors.smpp.conftest import eventually
from tests.gateway.conftest import CONTACT, MOBILE_B, Seed, auth, seed_directory

pytestmark = pytest.mark.anyio


@pytest.fixture
async def runtime(
    url: str, tmp_path: Path, clock: FrozenClock, smsc: SmscSimulator
) -> AsyncIterator[Runtime]:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    options = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": "gateway",
        "password": "secret",
        "rate": 0,
    }
    smpp = ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, options)
    rt = await open_runtime(dataclasses.replace(settings, connectors=(smpp,)), clock=clock)
    await rt.wait_started()
    try:
        yield rt
    finally:
        await rt.aclose()


async def test_api_to_delivered(runtime: Runtime, clock: FrozenClock, smsc: SmscSimulator) -> None:
    seed: Seed = await seed_directory(runtime, clock)
    assert isinstance(runtime.connectors["sms1"].connector, SmppConnector)
    assert runtime.health()["sms1"].ok
    app = create_app(runtime, workers=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw.test"
    ) as client:
        body = {"channel": "sms", "from": MOBILE_B, "to": CONTACT, "text": "Hallo über SMPP"}
        resp = await client.post("/v1/messages", json=body, headers=auth(seed.team_key))
        assert resp.status_code == 202, resp.text
        message_id = resp.json()["id"]
        assert await worker(runtime).run_once()
        [sub] = smsc.submits
        assert sub.text == "Hallo über SMPP" and sub.pdu.fields["destination_addr"] == CONTACT[1:]

        async def status() -> str:
            r = await client.get(f"/v1/messages/{message_id}", headers=auth(seed.team_key))
            return str(r.json()["status"])

        async with asyncio.timeout(10):
            while await status() != "delivered":  # noqa: ASYNC110  (the receipt is on its way)
                await asyncio.sleep(0.02)
    msg = await runtime.store.get_message(message_id)
    assert msg is not None and msg.carrier_id == sub.message_id
    history = [h.status for h in await runtime.store.status_history(message_id)]
    assert history == ["accepted", "sending", "sent", "delivered"]


async def test_inbound_sms_reaches_the_member(
    runtime: Runtime, clock: FrozenClock, smsc: SmscSimulator
) -> None:
    seed = await seed_directory(runtime, clock)
    text = "Eine lange Antwort, die nicht in eine SMS passt. " * 5
    smsc.inject(CONTACT, MOBILE_B, text, parts=3, order=[3, 2, 1])
    smsc.inject(CONTACT, MOBILE_B, text, parts=3, order=[3, 2, 1], ref=200)  # another one
    await eventually(lambda: len(smsc.deliver_results) == 6)
    assert all(status == 0 for _, status in smsc.deliver_results)
    page = await runtime.store.list_messages(MessageFilter(seed.team.id), None, 10)
    assert len(page.items) == 2
    assert {(m.direction, m.from_, m.to, m.text, m.segments, m.member_id) for m in page.items} == {
        ("inbound", CONTACT, MOBILE_B, text, 3, seed.ben.id)
    }
