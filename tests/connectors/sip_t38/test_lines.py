"""Lines and leases: a send holds its call for the whole fax while the worker renews the
job's lease (it runs once), max_calls bounds the calls, one call at a time per
destination, and a lossy line still delivers every page."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest

from gateway.process import worker
from tests.connectors.sip_t38.conftest import REMOTE, Gateway
from tests.fax.t38.support import make_tiff
from tests.gateway.conftest import FAX_A

pytestmark = pytest.mark.anyio
VISIBILITY = 0.3


@pytest.mark.parametrize("gateway", [{"visibility": VISIBILITY}], indirect=True)
async def test_a_send_longer_than_its_lease_runs_once(gateway: Gateway) -> None:
    gateway.sim.behaviour.ring_for = VISIBILITY * 5  # the call alone outlasts the lease
    message_id, _ = await gateway.submit_fax(pages=1)
    first, second = worker(gateway.rt, name="w1"), worker(gateway.rt, name="w2")
    running = asyncio.create_task(first.run_once())
    while not gateway.sim.calls_seen:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for _ in range(6):  # twice the lease over, the other worker finds nothing due
        await asyncio.sleep(VISIBILITY / 2)
        assert not await second.run_once()
    assert await running
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    assert len(gateway.sim.calls_seen) == 1 and len(gateway.sim.received) == 1


@pytest.mark.parametrize("gateway", [{"max_calls": 2}], indirect=True)
async def test_max_calls_and_one_call_per_destination(gateway: Gateway) -> None:
    gateway.sim.behaviour.ring_for = 0.3
    ids = [(await gateway.submit_fax(pages=1, to=to))[0]
           for to in (REMOTE, REMOTE, "+4940555001", "+4940555002")]
    peak = 0
    peak_per_number = 0
    jobs = worker(gateway.rt, concurrency=4)
    connector = gateway.connector

    async def watch() -> None:
        nonlocal peak, peak_per_number
        while True:
            calls = connector.ua.calls
            peak = max(peak, len(calls))
            numbers = [c.remote_uri.user for c in calls if c.remote_uri is not None]
            if numbers:
                peak_per_number = max(peak_per_number,
                                      max(numbers.count(n) for n in numbers))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        stop = asyncio.Event()
        run = asyncio.create_task(jobs.run(stop))
        for _ in range(1000):
            done = [await gateway.message(i) for i in ids]
            if all(m.status == "sent" for m in done):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await run
    finally:
        watcher.cancel()
    assert [m.status for m in done] == ["sent"] * 4
    assert peak == 2 and peak_per_number == 1
    assert len(gateway.sim.received) == 4


async def test_five_percent_loss_still_delivers_every_page(gateway: Gateway) -> None:
    gateway.sim.behaviour.loss = 0.05
    message_id, _ = await gateway.submit_fax(pages=2)
    assert await worker(gateway.rt).run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    [got] = gateway.sim.received
    assert got.result is not None and got.result.bad_rows == 0 and got.ok


@pytest.mark.parametrize("gateway", [{"media_ports": "41000-41000"}], indirect=True)
async def test_no_free_media_port(gateway: Gateway, tmp_path: Path) -> None:
    """The one media port taken: a send waits for a retry, an incoming call gets 503."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        with contextlib.suppress(OSError):  # already taken by someone else: as good
            taken.bind(("127.0.0.1", 41000))
        message_id, _ = await gateway.submit_fax(pages=1)
        assert await worker(gateway.rt).run_once()
        msg = await gateway.message(message_id)
        assert msg.status == "queued" and gateway.sim.calls_seen == []
        assert msg.error is None
        result, outcome = await gateway.sim.send_fax(
            FAX_A, make_tiff(tmp_path / "p.tif", pages=1), caller="+4940111222")
        assert result is None and outcome is not None and outcome.status == 503
