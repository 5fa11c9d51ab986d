"""Receiving: the simulator faxes a member's number; unknown numbers, refused callers and
a full trunk are turned away with 404, 603 and 486."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fax.t38.sip.outcome import EndCause
from gateway import policy
from gateway.commands import PolicyUpdate, convert
from gateway.process import worker
from tests.connectors.sip_t38.conftest import Gateway
from tests.fax.t38.support import assert_same_pages, make_tiff
from tests.gateway.conftest import FAX_A

pytestmark = pytest.mark.anyio
CALLER = "+4940111222"


@pytest.mark.parametrize("dialled", [FAX_A, "030123456701", "4930123456701"])
async def test_a_fax_to_a_member_arrives_as_an_inbound_message(
        gateway: Gateway, tmp_path: Path, dialled: str) -> None:
    tiff = make_tiff(tmp_path / "in.tif", pages=2)
    result, outcome = await gateway.sim.send_fax(dialled, tiff, caller=CALLER)
    assert result is not None and result.success, result
    assert outcome is not None and outcome.answered
    assert result.remote_ident == FAX_A  # our CSI: the member's number by default
    rt = gateway.rt
    for _ in range(200):
        found = await rt.store.list_events(0, 100)
        received = [e for e in found if e.type == "message.received"]
        if received:
            break
        await asyncio.sleep(0.01)
    [event] = received
    msg = await gateway.message(event.data["id"])
    assert (msg.channel, msg.from_, msg.to, msg.member_id) == (
        "fax", CALLER, FAX_A, gateway.seed.anna.id)
    assert msg.meta["fax"]["pages"] == 2
    report = msg.meta["fax"]["report"]
    assert report["result"] == "OK" and report["remote_csi"] == "REMOTE FAX"
    assert report["media"] == "t38" and report["pages"] == 2
    [att_id] = msg.attachments
    att = await rt.store.get_attachment(att_id)
    assert att is not None and att.content_type == "image/tiff"
    assert_same_pages(tiff, rt.blobs.path(att.sha256))


async def test_an_unknown_number_gets_404(gateway: Gateway, tmp_path: Path) -> None:
    tiff = make_tiff(tmp_path / "in.tif", pages=1)
    result, outcome = await gateway.sim.send_fax("+4930999999", tiff, caller=CALLER)
    assert result is None and outcome is not None
    assert (outcome.status, outcome.cause) == (404, EndCause.UNALLOCATED)


@pytest.mark.parametrize("field,listed", [("inbound_fax_blocked", [CALLER]),
                                          ("inbound_fax_allowed", ["+4989"])])
async def test_a_caller_the_policy_refuses_gets_603(
        gateway: Gateway, tmp_path: Path, field: str, listed: list[str]) -> None:
    rt = gateway.rt
    await policy.book(rt).replace(gateway.seed.team, convert(PolicyUpdate, {field: listed}),
                                  rt.settings.policy, gateway.clock.now())
    tiff = make_tiff(tmp_path / "in.tif", pages=1)
    result, outcome = await gateway.sim.send_fax(FAX_A, tiff, caller=CALLER)
    assert result is None and outcome is not None
    assert (outcome.status, outcome.cause) == (603, EndCause.REJECTED)
    # A caller on the allowed list (or off the blocked one) gets through.
    other = "+4989123456" if field == "inbound_fax_allowed" else "+4989000000"
    result, _ = await gateway.sim.send_fax(FAX_A, tiff, caller=other)
    assert result is not None and result.success


@pytest.mark.parametrize("gateway", [{"max_calls": 1}], indirect=True)
async def test_over_max_calls_an_incoming_call_gets_486(gateway: Gateway,
                                                        tmp_path: Path) -> None:
    gateway.sim.behaviour.no_answer = True  # the gateway's own call holds the one line
    await gateway.submit_fax(pages=1)
    sending = asyncio.create_task(worker(gateway.rt).run_once())
    while not gateway.sim.calls_seen:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    tiff = make_tiff(tmp_path / "in.tif", pages=1)
    result, outcome = await gateway.sim.send_fax(FAX_A, tiff, caller=CALLER)
    assert result is None and outcome is not None
    assert (outcome.status, outcome.cause) == (486, EndCause.BUSY)
    assert await sending
