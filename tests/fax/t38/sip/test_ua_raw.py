"""Our UA against hand-written datagrams: bad input, limits, stray requests, 2xx without ACK."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from fax.t38.sip.incoming import Answer, IncomingCall, Reject
from fax.t38.sip.message import (
    MAX_MESSAGE_SIZE,
    SipRequest,
    SipResponse,
    make_response,
    parse_message,
)
from fax.t38.sip.outcome import EndCause
from fax.t38.sip.timers import ManualTimers
from fax.t38.sip.ua import UserAgent
from tests.fax.t38.sip.conftest import UaFactory
from tests.fax.t38.sip.peers import PortHandler

pytestmark = pytest.mark.anyio

SDP = ("v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 40000 RTP/AVP 8\r\n")


class Raw:
    """A UDP socket that speaks SIP by hand."""

    def __init__(self, ua: UserAgent) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.ua_addr = ua.listen_address("udp")

    def request(self, method: str, *, branch: str = "z9hG4bKraw1", cseq: int = 1,
                to_tag: str | None = None, extra: str = "", body: str = "",
                call_id: str = "raw-1") -> bytes:
        to = "<sip:4930123456@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"{method} sip:4930123456@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch}\r\n"
            f"From: <sip:raw@127.0.0.1>;tag=rawtag\r\nTo: {to}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:raw@127.0.0.1:{self.port}>\r\n{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.ua_addr)

    async def recv(self, timeout: float = 3.0) -> SipRequest | SipResponse:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            data = await loop.sock_recv(self.sock, 70000)
        return parse_message(data)

    async def response(self, timeout: float = 3.0) -> SipResponse:
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, SipResponse) and msg.status != 100:
                return msg


@pytest.fixture
async def pair(make_ua: UaFactory) -> AsyncIterator[tuple[UserAgent, Raw]]:
    async def decide(incoming: IncomingCall) -> Answer | Reject:
        return Answer(PortHandler())

    ua = await make_ua(on_incoming=decide)
    raw = Raw(ua)
    try:
        yield ua, raw
    finally:
        raw.sock.close()


async def test_malformed_request_gets_400(pair: tuple[UserAgent, Raw]) -> None:
    _, raw = pair
    raw.send(raw.request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: many"))
    resp = await raw.response()
    assert resp.status == 400 and "Max-Forwards" in resp.reason
    bad_sdp = raw.request("INVITE", body="v=0\r\nnonsense\r\n")
    raw.send(bad_sdp)
    resp = await raw.response()
    assert resp.status == 400 and "SDP" in resp.reason


async def test_oversized_message_gets_513(pair: tuple[UserAgent, Raw]) -> None:
    _, raw = pair
    req = raw.request("OPTIONS", extra="X-Pad: " + "a" * 1000 + "\r\n")
    req = req.replace(b"Content-Length: 0", f"Content-Length: {MAX_MESSAGE_SIZE + 10}".encode())
    raw.send(req)
    resp = await raw.response()
    assert resp.status == 513


async def test_garbage_is_dropped(pair: tuple[UserAgent, Raw]) -> None:
    _, raw = pair
    raw.send(b"\x00\xffnot sip at all\r\n\r\n")
    raw.send(b"\r\n\r\n")  # a keep-alive
    raw.send(raw.request("OPTIONS"))
    resp = await raw.response()  # the first answer is the OPTIONS 200
    assert resp.status == 200 and resp.cseq == (1, "OPTIONS")


async def test_out_of_dialog_requests(pair: tuple[UserAgent, Raw]) -> None:
    _, raw = pair
    raw.send(raw.request("OPTIONS", branch="z9hG4bKo"))
    ok = await raw.response()
    assert ok.status == 200 and "INVITE" in (ok.headers.get("Allow") or "")
    assert ok.headers.get("Accept") == "application/sdp"
    raw.send(raw.request("BYE", branch="z9hG4bKb"))
    assert (await raw.response()).status == 481
    raw.send(raw.request("BYE", branch="z9hG4bKb2", to_tag="nosuch"))
    assert (await raw.response()).status == 481
    raw.send(raw.request("CANCEL", branch="z9hG4bKnone"))
    assert (await raw.response()).status == 481
    raw.send(raw.request("REGISTER", branch="z9hG4bKr"))
    resp = await raw.response()
    assert resp.status == 405 and resp.headers.get("Allow")
    raw.send(raw.request("FROBNICATE", branch="z9hG4bKf"))
    assert (await raw.response()).status == 501
    raw.send(raw.request("INVITE", branch="z9hG4bKrq", extra="Require: 100rel\r\n", body=SDP))
    resp = await raw.response()
    assert resp.status == 420 and resp.headers.get("Unsupported") == "100rel"


async def test_session_interval_below_our_minimum_gets_422(
    pair: tuple[UserAgent, Raw],
) -> None:
    _, raw = pair
    raw.send(raw.request("INVITE", extra="Session-Expires: 60\r\n", body=SDP))
    resp = await raw.response()
    assert resp.status == 422 and resp.headers.get("Min-SE") == "90"


async def test_unacceptable_offer_gets_488(pair: tuple[UserAgent, Raw]) -> None:
    _, raw = pair
    raw.send(raw.request("INVITE", body=SDP.replace("RTP/AVP 8", "RTP/AVP 18")))
    resp = await raw.response()
    assert resp.status == 488


async def test_retransmitted_invite_and_out_of_order_cseq(
    pair: tuple[UserAgent, Raw],
) -> None:
    ua, raw = pair
    invite = raw.request("INVITE", body=SDP)
    raw.send(invite)
    ok = await raw.response()
    assert ok.status == 200 and ok.to.tag
    raw.send(invite)  # a retransmission: the same 200 again, no second call
    again = await raw.response()
    assert again.to.tag == ok.to.tag and len(ua.calls) == 1
    raw.send(raw.request("ACK", branch="z9hG4bKack", to_tag=ok.to.tag))
    raw.send(raw.request("INFO", branch="z9hG4bKi", cseq=1, to_tag=ok.to.tag))
    resp = await raw.response()
    assert resp.status == 500 and "order" in resp.reason
    raw.send(raw.request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=ok.to.tag))
    assert (await raw.response()).status == 200
    outcome = await ua.calls[0].wait_ended() if ua.calls else None
    assert outcome is None or outcome.cause is EndCause.REMOTE_HANGUP


async def test_2xx_retransmitted_until_ack_then_bye(make_ua: UaFactory) -> None:
    timers = ManualTimers()
    handler = PortHandler()

    async def decide(incoming: IncomingCall) -> Answer | Reject:
        return Answer(handler)

    ua = await make_ua(on_incoming=decide, timers=timers)
    raw = Raw(ua)
    try:
        raw.send(raw.request("INVITE", body=SDP))
        ok = await raw.response()
        assert ok.status == 200
        [call] = ua.calls
        for delay in (0.5, 1.0, 2.0, 4.0, 4.0):  # T1 doubling, capped at T2
            timers.advance(delay)
            resent = await raw.response()
            assert resent.status == 200 and resent.cseq == (1, "INVITE")
        timers.advance(32)  # 64*T1 without an ACK: the session is given up with BYE
        bye = await raw.recv()
        while isinstance(bye, SipResponse):  # the last retransmissions before timer L
            assert bye.status == 200
            bye = await raw.recv()
        assert bye.method == "BYE"
        assert bye.to.tag == "rawtag" and bye.from_.tag == ok.to.tag
        raw.send(make_response(bye, 200).encode())
        outcome = await call.wait_ended()
        assert (outcome.cause, outcome.status) == (EndCause.FAILED, 408)
        assert handler.outcome == outcome
    finally:
        raw.sock.close()
