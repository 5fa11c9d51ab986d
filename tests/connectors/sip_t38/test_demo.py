"""The fax simulator as ``gateway demo``'s fax carrier: a demo member's fax goes out to
the simulator, and the simulator's fax to the member's number arrives for the member."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from connectors.base import demo_carriers
from connectors.sip_t38.demo import CONNECTOR_ID, FaxDemo
from gateway.auth import Principal
from gateway.commands import SendRequest, convert
from gateway.demo import create_demo, demo_numbers, demo_settings
from gateway.ids import new_id
from gateway.models import Attachment
from gateway.outbound import submit
from gateway.process import open_runtime, worker
from gateway.store.base import MessageFilter
from tests.connectors.sip_t38.conftest import KIND, REMOTE, TICKER, converted
from tests.fax.t38.support import make_tiff

pytestmark = pytest.mark.anyio


def test_the_fax_demo_carrier_is_installed() -> None:
    assert any(isinstance(c, FaxDemo) for c in demo_carriers())


async def test_demo_fax_both_ways(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path, "127.0.0.1", 8080)
    carrier = FaxDemo()
    config = await carrier.start(settings.public_url, demo_numbers())
    assert (config.id, config.kind, config.channels) == (CONNECTOR_ID, "sip_t38",
                                                         frozenset({"fax"}))
    sim = carrier.sim
    assert sim is not None and config.options["proxy"] == sim.uri
    assert sim.uri in carrier.banner()
    sim.ticker = TICKER  # the demo runs in real time; the test need not
    config = dataclasses.replace(config, kind=KIND)
    try:
        rt = await open_runtime(dataclasses.replace(settings, connectors=(config,)))
        try:
            info = await create_demo(rt.store, rt.clock, settings)
            await rt.wait_started()
            assert rt.health()[CONNECTOR_ID].ok
            anna = info.members[0]
            assert anna.fax is not None
            data = make_tiff(tmp_path / "p.tif", pages=1).read_bytes()
            att = Attachment(new_id("att"), info.team.id, rt.blobs.put(data), len(data),
                             "image/tiff", "p.tif", rt.clock.now())
            await rt.store.put_attachment(att)
            body = {"channel": "fax", "from": anna.fax, "to": REMOTE, "attachments": [att.id]}
            principal = Principal(info.team.id, None, "test")
            sent = await submit(rt, principal, convert(SendRequest, body))
            await converted(rt, sent.message.id)
            assert await worker(rt).run_once()
            msg = await rt.store.get_message(sent.message.id)
            assert msg is not None and msg.status == "sent", msg
            [got] = await sim.wait_received()
            assert got.ok and got.number == REMOTE
            result, _ = await sim.send_fax(anna.fax, tmp_path / "p.tif", caller=REMOTE)
            assert result is not None and result.success
            flt = MessageFilter(info.team.id, member_id=anna.id, direction="inbound")
            async with asyncio.timeout(20):
                while not (page := await rt.store.list_messages(flt, None, 10)).items:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            [inbound] = page.items
            assert (inbound.channel, inbound.from_, inbound.to) == ("fax", REMOTE, anna.fax)
            assert inbound.meta["fax"]["pages"] == 1
        finally:
            await rt.aclose()
    finally:
        await carrier.stop()
