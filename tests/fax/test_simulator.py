"""The fax simulator against itself: two simulated machines fax each other on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fax.simulator import FaxSimulator
from fax.t38.sdp import MediaKind
from fax.t38.sip.outcome import EndCause
from fax.t38.ticker import SimulatedTicker
from tests.fax.t38.support import assert_same_pages, make_tiff

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FaxSimulator, FaxSimulator]]:
    ticker = SimulatedTicker()
    far = FaxSimulator(ticker=ticker, station_id="FAR")
    await far.start()
    near = FaxSimulator(gateway=far.uri, ticker=ticker, station_id="NEAR")
    await near.start()
    try:
        yield near, far
    finally:
        await near.stop()
        await far.stop()


@pytest.mark.parametrize("t38", [True, False])
async def test_fax_between_two_simulators(pair: tuple[FaxSimulator, FaxSimulator],
                                          tmp_path: Path, t38: bool) -> None:
    near, far = pair
    tiff = make_tiff(tmp_path / "p.tif", pages=2)
    result, outcome = await near.send_fax("+4930111", tiff, caller="+4940222", t38=t38)
    assert result is not None and result.success, result
    assert outcome is not None and outcome.answered
    [got] = await far.wait_received()
    assert got.ok and got.number == "+4930111" and got.caller == "+4940222"
    assert got.media[-1] is (MediaKind.IMAGE if t38 else MediaKind.AUDIO)
    assert got.result is not None and got.result.remote_ident == "NEAR"
    assert got.tiff is not None
    (tmp_path / "rx.tif").write_bytes(got.tiff)
    assert_same_pages(tiff, tmp_path / "rx.tif")


async def test_refused_t38_falls_back_to_audio(pair: tuple[FaxSimulator, FaxSimulator],
                                               tmp_path: Path) -> None:
    near, far = pair
    far.behaviour.refuse_t38 = True
    tiff = make_tiff(tmp_path / "p.tif", pages=1)
    result, _ = await near.send_fax("+4930111", tiff, caller="+4940222")
    assert result is not None and result.success
    [got] = await far.wait_received()
    assert [k for k in got.media] == [MediaKind.AUDIO]


async def test_busy_and_reject(pair: tuple[FaxSimulator, FaxSimulator], tmp_path: Path) -> None:
    near, far = pair
    tiff = make_tiff(tmp_path / "p.tif", pages=1)
    far.behaviour.busy = True
    result, outcome = await near.send_fax("+4930111", tiff, caller="+4940222")
    assert result is None and outcome is not None and outcome.cause is EndCause.BUSY
    far.behaviour.busy = False
    far.behaviour.reject = 404
    result, outcome = await near.send_fax("+4930111", tiff, caller="+4940222")
    assert result is None and outcome is not None and outcome.cause is EndCause.UNALLOCATED
    assert far.received == []


async def test_loop_numbers_send_the_fax_back(tmp_path: Path) -> None:
    ticker = SimulatedTicker()
    near = FaxSimulator(ticker=ticker, station_id="NEAR")
    await near.start()
    far = FaxSimulator(gateway=near.uri, ticker=ticker, loop_numbers=("+4930111",))
    await far.start()
    dialler = FaxSimulator(gateway=far.uri, ticker=ticker)
    await dialler.start()
    try:
        tiff = make_tiff(tmp_path / "p.tif", pages=1)
        result, _ = await dialler.send_fax("+4930111", tiff, caller="+4940222")
        assert result is not None and result.success
        [back] = await near.wait_received()
        assert back.ok and (back.number, back.caller) == ("+4930111", "+4940222")
    finally:
        for sim in (dialler, far, near):
            await sim.stop()


@pytest.mark.slow
async def test_the_command_line_sends_a_fax_in_real_time(tmp_path: Path) -> None:
    """``python -m fax.simulator send`` faxes a file (real time, about 15 s a page)."""
    import asyncio
    import sys

    far = FaxSimulator(station_id="FAR")  # the real-time ticker, as the gateway's
    await far.start()
    try:
        tiff = make_tiff(tmp_path / "p.tif", pages=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fax.simulator", "send", "--gateway", far.uri,
            "--to", "+4930111", "--from", "+4940222", str(tiff),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        async with asyncio.timeout(90):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        assert out.decode().startswith("OK: 1 page(s)")
        [got] = await far.wait_received()
        assert got.ok and (got.number, got.caller) == ("+4930111", "+4940222")
    finally:
        await far.stop()
