"""Sending a fax through the whole gateway: the send job, the connector, the simulator."""

from __future__ import annotations

import pytest

from gateway.process import worker
from tests.connectors.sip_t38.conftest import REMOTE, Gateway
from tests.fax.t38.support import assert_same_pages

pytestmark = pytest.mark.anyio


async def test_a_fax_is_sent_page_by_page(gateway: Gateway) -> None:
    message_id, tiff = await gateway.submit_fax(pages=2)
    jobs = worker(gateway.rt)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    [got] = await gateway.sim.wait_received()
    assert got.ok and got.number == REMOTE
    assert got.result is not None and got.result.completion_code == 0
    assert got.tiff is not None
    (gateway.tmp / "rx.tif").write_bytes(got.tiff)
    assert_same_pages(tiff, gateway.tmp / "rx.tif")
    fax = msg.meta["fax"]
    assert fax["pages_sent"] == 2 and fax["pages"] == 2 and fax["dials"] == 1
    report = fax["report"]
    assert report["result"] == "OK" and report["t30_code"] == 0 and report["pages"] == 2
    assert report["remote_csi"] == "REMOTE FAX" and report["media"] == "t38"
    assert report["ecm"] is True and report["resolution"] == "fine"
    events = [e for e in await gateway.rt.store.list_events(0, 100) if e.type == "fax.page"]
    assert [(e.data["page"], e.data["pages"]) for e in events] == [(1, 2), (2, 2)]
    assert all(e.data["message_id"] == message_id for e in events)
    assert all(e.data["conversation_id"] == msg.conversation_id for e in events)
    assert all(e.data["member_id"] == gateway.seed.anna.id for e in events)
