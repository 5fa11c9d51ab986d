"""Two spandsp-driven sessions fax each other over real UDP sockets on loopback.

Simulated time (no pacing) keeps these fast; ``test_session_realtime.py`` runs the same
exchange against the real clock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fax.t38 import spandsp
from fax.t38.endpoint import MediaEndpoint
from fax.t38.errors import (
    FaxCallDroppedError,
    FaxCancelledError,
    FaxDocumentError,
    FaxNoResponseError,
)
from fax.t38.params import AudioParams, FaxJob, T38Params
from fax.t38.session import AudioFaxSession, T38Session, start_session
from fax.t38.ticker import SimulatedTicker
from tests.fax.t38.support import assert_same_pages, make_tiff, read_pages, run_pair

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", ["t38", "g711"])
@pytest.mark.parametrize("ecm", [True, False], ids=["ecm", "no-ecm"])
@pytest.mark.parametrize("fine", [True, False], ids=["fine", "standard"])
async def test_fax_goes_through_pixel_identical(
    tmp_path: Path, kind: str, ecm: bool, fine: bool
) -> None:
    pair = await run_pair(tmp_path, kind=kind, ecm=ecm, fine=fine, ticker=SimulatedTicker())

    for result in (pair.sender, pair.receiver):
        assert result.completion_code == 0, result.words
        assert result.words == "OK"
        assert result.success
        assert result.error is None
        assert result.ecm is ecm
        assert result.bit_rate == 14400
        assert result.pages_transferred == 2
        assert result.x_resolution == 204
        assert result.y_resolution == (196 if fine else 98)
        assert result.fine is fine
        assert result.bad_rows == 0
        assert 5 < result.duration < 60
    assert pair.sender.sending and not pair.receiver.sending
    assert pair.sender.pages_in_file == 2
    assert pair.sender.remote_ident == "+49 40 2222"  # the receiver's CSI
    assert pair.receiver.remote_ident == "+49 30 1111"  # the sender's TSI
    assert_same_pages(pair.sent, pair.received)


@pytest.mark.parametrize("kind", ["t38", "g711"])
async def test_either_side_can_send(tmp_path: Path, kind: str) -> None:
    """B sends to A on the same pair of endpoints: the roles are not tied to a socket."""
    sent = make_tiff(tmp_path / "b.tiff", 1)
    ticker = SimulatedTicker()
    ep_a = await MediaEndpoint.bind()
    ep_b = await MediaEndpoint.bind()
    params = T38Params() if kind == "t38" else AudioParams("PCMU", 0)
    receiving = await start_session(
        FaxJob(receive_file=tmp_path / "a.tiff"), params, ep_b.local_address,
        endpoint=ep_a, ticker=ticker,
    )
    sending = await start_session(
        FaxJob(send_file=sent), params, ep_a.local_address, endpoint=ep_b, ticker=ticker
    )
    results = await asyncio.gather(receiving.wait(), sending.wait())
    for s in (receiving, sending):
        s.close()
    ep_a.close()
    ep_b.close()
    assert all(r.success for r in results), results
    assert_same_pages(sent, tmp_path / "a.tiff")


async def test_page_progress_is_reported_per_page(tmp_path: Path) -> None:
    pair = await run_pair(tmp_path, pages=3, ticker=SimulatedTicker())

    sent = [p for p in pair.progress if p.sending]
    received = [p for p in pair.progress if not p.sending]
    assert [(p.page, p.pages, p.confirmed) for p in sent] == [
        (1, 3, True), (2, 3, True), (3, 3, True)
    ]
    assert [(p.page, p.pages) for p in received] == [(1, None), (2, None), (3, None)]


async def test_header_line_is_printed_atop_each_page(tmp_path: Path) -> None:
    pair = await run_pair(
        tmp_path, pages=1, ticker=SimulatedTicker(), sender_job={"header": "ACME GmbH Fax"}
    )

    assert pair.sender.success
    sent, got = read_pages(pair.sent)[0], read_pages(pair.received)[0]
    extra = got.height - sent.height
    assert extra > 0, "spandsp adds the header rows above the page"
    header = got.crop((0, 0, got.width, extra))
    assert header.getbbox() is not None, "the header rows carry text"
    assert_same_pages(pair.sent, pair.received, skip_top=extra)


async def test_resume_from_a_later_page(tmp_path: Path) -> None:
    pair = await run_pair(
        tmp_path, pages=3, ticker=SimulatedTicker(), sender_job={"start_page": 1}
    )

    assert pair.sender.success, pair.sender
    assert pair.sender.pages_transferred == 2
    assert pair.sender.pages_expected == 2
    assert pair.receiver.pages_transferred == 2
    want = read_pages(pair.sent)[1:]
    got = read_pages(pair.received)
    assert [p.tobytes() for p in got] == [p.tobytes() for p in want]


async def test_v27ter_only_and_t38_max_bit_rate(tmp_path: Path) -> None:
    """The SDP's T38MaxBitRate limits the modems: 4800 leaves V.27ter only."""
    pair = await run_pair(
        tmp_path, pages=1, ticker=SimulatedTicker(), t38=T38Params(max_bit_rate=4800)
    )

    assert pair.sender.success
    assert pair.sender.bit_rate == 4800
    assert_same_pages(pair.sent, pair.received)


async def test_local_tcf_rate_management(tmp_path: Path) -> None:
    pair = await run_pair(
        tmp_path, ecm=False, pages=1, ticker=SimulatedTicker(),
        t38=T38Params(rate_management="localTCF"),
    )

    assert pair.sender.success and pair.receiver.success
    assert_same_pages(pair.sent, pair.received)


async def test_small_max_datagram_limits_redundancy(tmp_path: Path) -> None:
    """With T38FaxMaxDatagram 72 fewer old IFPs fit, yet every datagram stays within it."""
    pair = await run_pair(
        tmp_path, pages=1, ticker=SimulatedTicker(), t38=T38Params(max_datagram=72)
    )

    assert pair.sender.success
    for session in pair.sessions:
        assert isinstance(session, T38Session)
        assert session.sender.oversize == 0
    assert_same_pages(pair.sent, pair.received)


async def test_missing_document_is_a_document_error(tmp_path: Path) -> None:
    ticker = SimulatedTicker()
    ep_a, ep_b = await MediaEndpoint.bind(), await MediaEndpoint.bind()
    job = FaxJob(send_file=tmp_path / "nothing.tiff")
    sender = T38Session(ep_a, ep_b.local_address, job, T38Params(), ticker=ticker)
    receiver = T38Session(
        ep_b, ep_a.local_address, FaxJob(receive_file=tmp_path / "r.tiff"), T38Params(),
        ticker=ticker,
    )
    sender.start()
    receiver.start()
    result = await asyncio.wait_for(sender.wait(), 30)
    receiver.close()
    sender.close()
    ep_a.close()
    ep_b.close()

    assert not result.success
    assert isinstance(result.error, FaxDocumentError)
    assert result.words == spandsp.completion_code_to_str(result.completion_code)


async def test_no_answer_times_out_as_no_response(tmp_path: Path) -> None:
    """Nobody at the far end: T.30's T0 runs out (60 s of simulated time)."""
    ticker = SimulatedTicker()
    ep_a, ep_b = await MediaEndpoint.bind(), await MediaEndpoint.bind()
    sender = T38Session(
        ep_a, ep_b.local_address, FaxJob(send_file=make_tiff(tmp_path / "s.tiff", 1)),
        T38Params(), ticker=ticker,
    )
    sender.start()
    result = await asyncio.wait_for(sender.wait(), 30)
    sender.close()
    ep_a.close()
    ep_b.close()

    assert isinstance(result.error, FaxNoResponseError), result
    assert 55 < result.duration < 70  # T0: 60 s


@pytest.mark.parametrize("kind", ["t38", "g711"])
async def test_cancel_and_call_ended_mid_fax(tmp_path: Path, kind: str) -> None:
    ticker = SimulatedTicker()
    sent = make_tiff(tmp_path / "s.tiff", 3)
    ep_a, ep_b = await MediaEndpoint.bind(), await MediaEndpoint.bind()
    params = T38Params() if kind == "t38" else AudioParams()
    first_page = asyncio.Event()
    sender = await start_session(
        FaxJob(send_file=sent), params, ep_b.local_address, endpoint=ep_a, ticker=ticker,
        on_page=lambda p: first_page.set(),
    )
    receiver = await start_session(
        FaxJob(receive_file=tmp_path / "r.tiff"), params, ep_a.local_address,
        endpoint=ep_b, ticker=ticker,
    )
    await asyncio.wait_for(first_page.wait(), 30)
    sender.cancel()  # we give up
    receiver.call_ended()  # the far end hung up
    got_sender, got_receiver = await sender.wait(), await receiver.wait()
    for s in (sender, receiver):
        s.close()
    ep_a.close()
    ep_b.close()

    assert got_sender.cancelled and not got_sender.success
    assert isinstance(got_sender.error, FaxCancelledError)
    assert got_sender.pages_transferred == 1
    assert isinstance(got_receiver.error, FaxCallDroppedError)
    assert got_receiver.completion_code == spandsp.T30_ERR_CALLDROPPED


async def test_remote_must_be_an_ip_address(tmp_path: Path) -> None:
    ep = await MediaEndpoint.bind()
    with pytest.raises(ValueError, match="IP"):
        T38Session(ep, ("localhost", 9), FaxJob(receive_file=tmp_path / "r.tiff"), T38Params())
    ep.close()


async def test_close_before_start_and_twice(tmp_path: Path) -> None:
    ep = await MediaEndpoint.bind()
    session = AudioFaxSession(
        ep, ("127.0.0.1", 9), FaxJob(receive_file=tmp_path / "r.tiff"), AudioParams()
    )
    session.close()
    session.close()
    with pytest.raises(RuntimeError, match="closed"):
        session.start()
    ep.close()
    result = await session.wait()
    assert result.cancelled
    assert isinstance(result.error, FaxCancelledError)


async def test_datagrams_from_elsewhere_and_garbage_are_ignored(tmp_path: Path) -> None:
    ticker = SimulatedTicker()
    ep = await MediaEndpoint.bind()
    session = T38Session(
        ep, ("127.0.0.2", 9), FaxJob(receive_file=tmp_path / "r.tiff"), T38Params(),
        ticker=ticker,
    )
    session.start()
    other = await MediaEndpoint.bind("127.0.0.2")
    stranger = await MediaEndpoint.bind("127.0.0.1")
    other.sendto(b"\x00\x01\xff\xff\xff", ep.local_address)  # right host, malformed UDPTL
    stranger.sendto(b"\x00\x01\x01\x00\x00\x00", ep.local_address)  # wrong host
    for _ in range(20):
        await asyncio.sleep(0.01)
        if session.ignored >= 2:
            break
    session.close()
    for e in (ep, other, stranger):
        e.close()
    assert session.ignored == 2


class StallingTicker(SimulatedTicker):
    """Every 100th step is a 150 ms stall: one big tick, datagrams still unread."""

    async def _run(self) -> None:
        step = 0
        while self._sessions:
            step += 1
            self._drive(self.total + (1200 if step % 100 == 0 else 160))
            for _ in range(self.yields):
                await asyncio.sleep(0)


@pytest.mark.parametrize("kind", ["t38", "g711"])
async def test_loop_stalls_are_caught_up(tmp_path: Path, kind: str) -> None:
    pair = await run_pair(tmp_path, kind=kind, ticker=StallingTicker())

    assert pair.sender.success, pair.sender
    assert pair.receiver.success, pair.receiver
    assert_same_pages(pair.sent, pair.received)
