"""RFC 3261 §17 transactions on a manual clock: retransmissions, timers A-M, matching."""

from __future__ import annotations

import pytest

from fax.t38.sip.errors import SipError, TransactionTimeout, TransportError
from fax.t38.sip.message import SipRequest, SipResponse, make_response, parse_message
from fax.t38.sip.timers import ManualTimers
from fax.t38.sip.transaction import (
    ClientEvent,
    ServerTransaction,
    State,
    TransactionLayer,
    new_branch,
)
from fax.t38.sip.transport import Received, Target

UDP = Target("udp", "127.0.0.1", 5070)
TCP = Target("tcp", "127.0.0.1", 5070)


class FakeSender:
    """Records what the transactions send, with the manual clock's time."""

    def __init__(self, timers: ManualTimers) -> None:
        self.timers = timers
        self.sent: list[tuple[float, SipRequest | SipResponse, Target]] = []
        self.fail = False

    def send(self, message: SipRequest | SipResponse, target: Target) -> None:
        if self.fail:
            raise TransportError("connection refused")
        self.sent.append((self.timers.now(), message, target))

    def times(self, what: str) -> list[float]:
        out = []
        for t, m, _ in self.sent:
            name = m.method if isinstance(m, SipRequest) else str(m.status)
            if name == what:
                out.append(t)
        return out


class Stack:
    def __init__(self) -> None:
        self.timers = ManualTimers()
        self.sender = FakeSender(self.timers)
        self.requests: list[tuple[SipRequest, ServerTransaction | None]] = []
        self.strays: list[SipResponse] = []
        self.layer = TransactionLayer(
            self.sender, self.timers,
            lambda req, st, rx: self.requests.append((req, st)),
            lambda resp, rx: self.strays.append(resp),
        )
        self.events: list[ClientEvent] = []


def request(method: str = "INVITE", branch: str | None = None, cseq: int = 1) -> SipRequest:
    text = (
        f"{method} sip:123@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch or new_branch()};rport\r\n"
        "From: <sip:fax@127.0.0.1>;tag=ours\r\nTo: <sip:123@127.0.0.1>\r\n"
        f"Call-ID: c1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, SipRequest)
    return msg


def response(req: SipRequest, status: int) -> Received:
    return Received(make_response(req, status, to_tag="theirs"), UDP)


def test_non_invite_client_retransmits_with_backoff_then_times_out() -> None:
    s = Stack()
    req = request("OPTIONS")
    s.layer.send_request(req, UDP, s.events.append)
    s.timers.advance(40)
    # Timer E: 0.5, 1, 2, 4, 4, 4 … (capped at T2) until timer F at 32 s.
    assert s.sender.times("OPTIONS") == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5,
                                         31.5]
    [ev] = s.events
    assert isinstance(ev, TransactionTimeout)
    assert not s.layer.clients


def test_non_invite_client_after_provisional_retransmits_at_t2() -> None:
    s = Stack()
    req = request("BYE")
    s.layer.send_request(req, UDP, s.events.append)
    s.timers.advance(0.6)
    s.layer.receive(response(req, 100))
    s.timers.advance(9)
    assert s.sender.times("BYE") == [0, 0.5, 1.5, 5.5, 9.5]
    s.layer.receive(response(req, 200))
    assert [e.status for e in s.events if isinstance(e, SipResponse)] == [100, 200]
    s.layer.receive(response(req, 200))  # retransmission absorbed in Completed
    assert len(s.events) == 2
    s.timers.advance(5)  # timer K = T4
    assert not s.layer.clients


def test_reliable_transport_never_retransmits() -> None:
    s = Stack()
    req = request("OPTIONS")
    s.layer.send_request(req, TCP, s.events.append)
    s.timers.advance(10)
    assert s.sender.times("OPTIONS") == [0]
    s.layer.receive(Received(make_response(req, 200), TCP))
    assert not s.layer.clients  # timer K is 0 over TCP


def test_invite_client_timer_a_doubles_without_cap_until_b() -> None:
    s = Stack()
    s.layer.send_request(request(), UDP, s.events.append)
    s.timers.advance(33)
    assert s.sender.times("INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert isinstance(s.events[0], TransactionTimeout)


def test_invite_client_failure_is_acked_with_the_same_branch() -> None:
    s = Stack()
    req = request()
    s.layer.send_request(req, UDP, s.events.append)
    s.layer.receive(response(req, 180))
    s.timers.advance(5)
    assert s.sender.times("INVITE") == [0]  # 1xx stopped timer A
    s.layer.receive(response(req, 486))
    s.layer.receive(response(req, 486))  # retransmitted final: ACK again, TU not told
    acks = [m for _, m, _ in s.sender.sent if isinstance(m, SipRequest) and m.method == "ACK"]
    assert len(acks) == 2
    ack = acks[0]
    assert ack.top_via.branch == req.top_via.branch and ack.cseq == (1, "ACK")
    assert ack.to.tag == "theirs" and ack.uri == req.uri
    assert [e.status for e in s.events if isinstance(e, SipResponse)] == [180, 486]
    s.timers.advance(32)  # timer D
    assert not s.layer.clients


def test_invite_client_2xx_retransmissions_reach_the_tu() -> None:
    s = Stack()
    req = request()
    tx = s.layer.send_request(req, UDP, s.events.append)
    s.layer.receive(response(req, 200))
    assert tx.state is State.ACCEPTED
    s.layer.receive(response(req, 200))
    assert [e.status for e in s.events if isinstance(e, SipResponse)] == [200, 200]
    assert not [m for _, m, _ in s.sender.sent if isinstance(m, SipRequest) and
                m.method == "ACK"]  # the TU ACKs a 2xx, not the transaction
    s.timers.advance(32)  # timer M
    assert not s.layer.clients
    s.layer.receive(response(req, 200))
    assert len(s.strays) == 1


def test_transport_error_reaches_the_tu() -> None:
    s = Stack()
    s.sender.fail = True
    s.layer.send_request(request("OPTIONS"), TCP, s.events.append)
    assert isinstance(s.events[0], TransportError) and not s.layer.clients


def test_invite_server_retransmits_failure_until_ack() -> None:
    s = Stack()
    req = request()
    s.layer.receive(Received(req, UDP))
    [(_, st)] = s.requests
    assert st is not None
    st.respond(make_response(req, 100))
    s.layer.receive(Received(req, UDP))  # retransmitted INVITE: the 100 again
    assert s.sender.times("100") == [0, 0]
    st.respond(make_response(req, 486, to_tag="t"))
    s.timers.advance(8)
    assert s.sender.times("486") == [0, 0.5, 1.5, 3.5, 7.5]  # timer G
    ack = request("ACK", branch=req.top_via.branch)
    s.layer.receive(Received(ack, UDP))
    assert st.state is State.CONFIRMED and len(s.requests) == 1  # the ACK is absorbed
    s.timers.advance(10)
    assert s.sender.times("486") == [0, 0.5, 1.5, 3.5, 7.5]
    assert not s.layer.servers  # timer I


def test_invite_server_gives_up_without_ack() -> None:
    s = Stack()
    req = request()
    s.layer.receive(Received(req, UDP))
    st = s.requests[0][1]
    assert st is not None
    ended: list[ServerTransaction] = []
    st.on_terminated = ended.append
    st.respond(make_response(req, 603, to_tag="t"))
    s.timers.advance(40)
    assert s.sender.times("603")[-1] <= 32 and ended == [st]  # timer H at 64*T1


def test_invite_server_2xx_then_ack_with_new_branch_goes_to_the_tu() -> None:
    s = Stack()
    req = request()
    s.layer.receive(Received(req, UDP))
    st = s.requests[0][1]
    assert st is not None
    st.respond(make_response(req, 200, to_tag="t"))
    assert st.state is State.ACCEPTED
    s.layer.receive(Received(req, UDP))  # INVITE retransmission absorbed (timer L)
    assert len(s.requests) == 1
    s.layer.receive(Received(request("ACK", cseq=1), UDP))
    assert [r.method for r, _ in s.requests] == ["INVITE", "ACK"] and s.requests[1][1] is None


def test_non_invite_server_answers_retransmissions() -> None:
    s = Stack()
    req = request("BYE")
    s.layer.receive(Received(req, UDP))
    st = s.requests[0][1]
    assert st is not None
    st.respond(make_response(req, 200))
    s.layer.receive(Received(req, UDP))
    assert s.sender.times("200") == [0, 0] and len(s.requests) == 1
    s.timers.advance(32)  # timer J
    assert not s.layer.servers


def test_cancel_is_its_own_transaction_and_finds_the_invite() -> None:
    s = Stack()
    req = request()
    s.layer.receive(Received(req, UDP))
    cancel = request("CANCEL", branch=req.top_via.branch)
    s.layer.receive(Received(cancel, UDP))
    assert [r.method for r, _ in s.requests] == ["INVITE", "CANCEL"]
    assert s.layer.find_invite(cancel) is s.requests[0][1]


def test_responses_go_where_via_says() -> None:
    s = Stack()
    req = request("OPTIONS")
    req.headers.set("Via", "SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bKnoport")
    s.layer.receive(Received(req, Target("udp", "127.0.0.8", 40000)))
    st = s.requests[0][1]
    assert st is not None
    # No rport: the source address, but the port from Via (§18.2.2).
    assert st.target == Target("udp", "127.0.0.8", 5099)
    req2 = request("OPTIONS")
    s.layer.receive(Received(req2, Target("udp", "127.0.0.8", 40000)))
    st2 = s.requests[1][1]
    assert st2 is not None and st2.target == Target("udp", "127.0.0.8", 40000)  # rport


@pytest.mark.parametrize("status", [401, 404, 500, 603])
def test_error_event_types(status: int) -> None:
    s = Stack()
    req = request("REGISTER")
    s.layer.send_request(req, UDP, s.events.append)
    s.layer.receive(response(req, status))
    assert [e.status for e in s.events if not isinstance(e, SipError)] == [status]
