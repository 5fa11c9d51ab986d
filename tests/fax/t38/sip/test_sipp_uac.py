"""SIPp calls our UA on loopback: inbound T.38, re-INVITEs, glare, CANCEL, refusals, OPTIONS."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fax.t38.sdp import MediaKind
from fax.t38.sip.call import Call, CallState
from fax.t38.sip.incoming import Answer, IncomingCall, Reject
from fax.t38.sip.outcome import EndCause
from fax.t38.sip.ua import UserAgent
from tests.fax.t38.sip.conftest import UaFactory
from tests.fax.t38.sip.peers import PortHandler, Sipp, tap

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Callee:
    """An incoming-call decider that keeps what it saw and what it answered with."""

    def __init__(self, ring_for: float = 0.0) -> None:
        self.seen: list[IncomingCall] = []
        self.handlers: list[PortHandler] = []
        self.calls: list[Call] = []
        self.ring_for = ring_for
        self.arrived = asyncio.Event()

    async def __call__(self, incoming: IncomingCall) -> Answer | Reject:
        self.seen.append(incoming)
        self.calls.append(incoming.call)
        self.arrived.set()
        number = incoming.number or ""
        if number == "404":
            return Reject(404)
        if number == "486":
            return Reject(486)
        if number == "603":
            return Reject(603, "Declined by policy")
        handler = PortHandler()
        self.handlers.append(handler)
        return Answer(handler, ring_for=self.ring_for)


def target(ua: UserAgent) -> str:
    host, port = ua.listen_address("udp")
    return f"{host}:{port}"


async def test_inbound_invite_offering_t38_straight_away(make_ua: UaFactory,
                                                         workdir: Path) -> None:
    callee = Callee()
    ua = await make_ua(on_incoming=callee)
    sipp = Sipp("uac_image_offer.xml", workdir, keys={"service": "4930123456"})
    await sipp.start(target(ua))
    try:
        await sipp.finish()
    finally:
        await sipp.stop()
    [incoming] = callee.seen
    assert incoming.number == "4930123456" and incoming.caller == "4940999"
    assert incoming.caller_display == "Fax Sender"
    assert incoming.offer is not None and incoming.offer.media[0].kind == "image"
    call = incoming.call
    outcome = await call.wait_ended()
    assert outcome.cause is EndCause.REMOTE_HANGUP and outcome.answered
    [handler] = callee.handlers
    [media] = handler.history
    assert media.kind is MediaKind.IMAGE and media.t38 is not None
    assert (media.t38.version, media.t38.max_bit_rate) == (0, 9600)
    assert media.remote_max_datagram == 176 and media.remote_t38 is not None
    assert media.remote_t38.fill_bit_removal


async def test_far_end_reinvites_to_t38_then_refused_offer_then_refresh(
    make_ua: UaFactory, workdir: Path
) -> None:
    callee = Callee()
    ua = await make_ua(on_incoming=callee)
    sent = tap(ua)
    sipp = Sipp("uac_reinvite.xml", workdir)
    await sipp.start(target(ua))
    try:
        await sipp.finish()
    finally:
        await sipp.stop()
    call = callee.calls[0]
    outcome = await call.wait_ended()
    assert outcome.cause is EndCause.REMOTE_HANGUP
    [handler] = callee.handlers
    # Delayed offer answered in the ACK (audio), then the switch to T.38; the video-only
    # offer got 488 and the unchanged refresh changed nothing.
    assert [m.kind for m in handler.history] == [MediaKind.AUDIO, MediaKind.IMAGE]
    assert handler.history[1].remote_max_datagram == 320
    assert len(sent.responses(488)) == 1 and call.refreshes_received == 1
    oks = [r for r in sent.responses(200) if r.cseq[1] == "INVITE"]
    assert oks[-1].body == oks[-2].body  # the refresh got the T.38 answer unchanged


async def test_glare_when_the_far_end_owns_the_call_id(make_ua: UaFactory,
                                                       workdir: Path) -> None:
    callee = Callee()
    ua = await make_ua(on_incoming=callee)
    sent = tap(ua)
    sipp = Sipp("uac_glare.xml", workdir)
    await sipp.start(target(ua))
    try:
        async with asyncio.timeout(10):
            await callee.arrived.wait()
        call = callee.calls[0]
        await call.wait_answered()
        assert await call.reinvite_to_t38() is True  # after 491 and our 0-2 s back-off
        assert call.media is not None and call.media.kind is MediaKind.IMAGE
        await sipp.finish()
    finally:
        await sipp.stop()
    assert len(sent.responses(491)) == 1  # we refused SIPp's crossing re-INVITE
    assert len(sent.requests("INVITE")) == 2  # ours, and our retry
    assert (await call.wait_ended()).cause is EndCause.REMOTE_HANGUP


async def test_caller_cancels_before_answer_and_lines_are_limited(
    make_ua: UaFactory, workdir: Path
) -> None:
    callee = Callee(ring_for=30)  # rings, never answers in time
    ua = await make_ua(on_incoming=callee, max_calls=1)
    ringing = Sipp("uac_cancel.xml", workdir, extra=("-d", "4000"))
    await ringing.start(target(ua))
    second = Sipp("uac_rejected.xml", workdir, keys={"service": "4930999"})
    try:
        async with asyncio.timeout(10):
            await callee.arrived.wait()
        # The one line is busy ringing: a second call gets 486 without being offered.
        await second.start(target(ua))
        await second.finish()
        assert len(callee.seen) == 1
        await ringing.finish()
    finally:
        await ringing.stop()
        await second.stop()
    call = callee.calls[0]
    outcome = await call.wait_ended()
    assert (outcome.cause, outcome.status) == (EndCause.CANCELLED, 487)
    assert not outcome.answered and callee.handlers[0].history == []
    assert call.state is CallState.ENDED and not ua.calls


@pytest.mark.parametrize(("number", "status", "reason"), [
    ("404", 404, "Not Found"),
    ("486", 486, "Busy Here"),
    ("603", 603, "Declined by policy"),
])
async def test_inbound_rejected(make_ua: UaFactory, workdir: Path, number: str,
                                status: int, reason: str) -> None:
    callee = Callee()
    ua = await make_ua(on_incoming=callee)
    sent = tap(ua)
    sipp = Sipp("uac_rejected.xml", workdir, keys={"service": number})
    await sipp.start(target(ua))
    try:
        await sipp.finish()
    finally:
        await sipp.stop()
    [final] = [m for m, _ in sent.sent if getattr(m, "status", 0) >= 300]
    assert (getattr(final, "status", None), getattr(final, "reason", None)) == (status, reason)
    outcome = await callee.calls[0].wait_ended()
    assert outcome.status == status and not outcome.answered
    await asyncio.sleep(0.1)
    assert not ua.transactions.servers or all(
        st.state.value in ("confirmed", "terminated") for st in ua.transactions.servers.values()
    )  # SIPp's ACK matched our INVITE server transaction


async def test_options_answered(make_ua: UaFactory, workdir: Path) -> None:
    ua = await make_ua(on_incoming=Callee())
    sipp = Sipp("uac_options.xml", workdir)
    await sipp.start(target(ua))
    try:
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_over_tcp(make_ua: UaFactory, workdir: Path) -> None:
    callee = Callee()
    ua = await make_ua(on_incoming=callee)
    sent = tap(ua)
    sipp = Sipp("uac_image_offer.xml", workdir, transport="t1")
    await sipp.start(target(ua))
    try:
        await sipp.finish()
    finally:
        await sipp.stop()
    assert (await callee.calls[0].wait_ended()).cause is EndCause.REMOTE_HANGUP
    assert {t.transport for _, t in sent.sent} == {"tcp"}
