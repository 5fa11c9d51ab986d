"""Small pieces of the UA: outcomes, the glare back-off, session-timer values, settings,
dialogs and the manual clock."""

from __future__ import annotations

import random

import pytest

from fax.t38.sip.call import glare_backoff
from fax.t38.sip.config import UserAgentConfig, split_hostport
from fax.t38.sip.dialog import Dialog
from fax.t38.sip.errors import SipParseError
from fax.t38.sip.incoming import Reject
from fax.t38.sip.message import SipRequest, SipResponse, make_response, parse_message
from fax.t38.sip.outcome import CallOutcome, EndCause
from fax.t38.sip.session_timer import (
    SessionExpires,
    SessionTimerSettings,
    expire_at,
    min_se,
    refresh_at,
    session_expires,
)
from fax.t38.sip.timers import ManualTimers, TimerValues
from fax.t38.sip.transport import Target
from fax.t38.sip.uri import SipUri


@pytest.mark.parametrize(("status", "cause"), [
    (486, EndCause.BUSY), (600, EndCause.BUSY), (408, EndCause.NO_ANSWER),
    (480, EndCause.NO_ANSWER), (404, EndCause.UNALLOCATED), (484, EndCause.UNALLOCATED),
    (604, EndCause.UNALLOCATED), (403, EndCause.REJECTED), (603, EndCause.REJECTED),
    (488, EndCause.NOT_ACCEPTABLE), (606, EndCause.NOT_ACCEPTABLE), (487, EndCause.CANCELLED),
    (401, EndCause.AUTH_FAILED), (407, EndCause.AUTH_FAILED), (500, EndCause.FAILED),
    (302, EndCause.FAILED),
])
def test_outcome_for_status(status: int, cause: EndCause) -> None:
    outcome = CallOutcome.from_status(status, "x")
    assert (outcome.cause, outcome.status, outcome.answered) == (cause, status, False)


def test_glare_backoff_ranges() -> None:
    rng = random.Random(7)
    owner = [glare_backoff(True, rng) for _ in range(500)]
    other = [glare_backoff(False, rng) for _ in range(500)]
    assert min(owner) >= 2.1 and max(owner) <= 4.0
    assert min(other) >= 0.0 and max(other) <= 2.0
    assert all(abs(v * 100 - round(v * 100)) < 1e-9 for v in owner + other)  # 10 ms units
    assert max(other) > 1.5 and min(owner) < 2.5  # the whole ranges are used


def test_session_timer_values() -> None:
    assert SessionExpires.parse("1800;refresher=UAS") == SessionExpires(1800, "uas")
    assert SessionExpires.parse(" 90 ") == SessionExpires(90)
    assert str(SessionExpires(90, "uac")) == "90;refresher=uac" and str(SessionExpires(5)) == "5"
    for bad in ("0", "x", "90;refresher=me", "-5"):
        with pytest.raises(SipParseError):
            SessionExpires.parse(bad)
    assert refresh_at(1800) == 900 and expire_at(1800) == 1768 and expire_at(90) == 60
    msg = parse_message(
        b"SIP/2.0 422 Session Interval Too Small\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Min-SE: 1000;x=y\r\nx: 1200;refresher=uac\r\n\r\n")
    assert min_se(msg) == 1000 and session_expires(msg) == SessionExpires(1200, "uac")
    with pytest.raises(ValueError):
        SessionTimerSettings(interval=60)
    with pytest.raises(ValueError):
        SessionTimerSettings(method="options")


def test_settings_validation() -> None:
    assert split_hostport("[::1]:5070") == ("::1", 5070)
    assert split_hostport("example.net") == ("example.net", 5060)
    with pytest.raises(ValueError):
        split_hostport("host:port")
    with pytest.raises(SipParseError):
        UserAgentConfig(proxy="http://example.net")
    with pytest.raises(ValueError, match="register"):
        UserAgentConfig(register=True)
    with pytest.raises(ValueError, match="tls"):
        UserAgentConfig(tls_cert="c.pem")
    with pytest.raises(ValueError, match="max_calls"):
        UserAgentConfig(max_calls=0)
    c = UserAgentConfig(proxy="sip:10.0.0.1:5070;transport=tcp")
    assert c.domain_part == "10.0.0.1:5070" and c.proxy_uri is not None
    assert c.proxy_uri.transport == "tcp"
    with pytest.raises(ValueError):
        Reject(200)


def _invite() -> SipRequest:
    msg = parse_message(
        b"INVITE sip:1@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:fax@h>;tag=ours\r\nTo: <sip:1@h>\r\nCall-ID: c\r\nCSeq: 4 INVITE\r\n"
        b"Contact: <sip:fax@127.0.0.1>\r\n\r\n")
    assert isinstance(msg, SipRequest)
    return msg


def _ok(req: SipRequest, *record_routes: str) -> SipResponse:
    resp = make_response(req, 200, to_tag="theirs")
    for rr in record_routes:
        resp.headers.add("Record-Route", rr)
    resp.headers.add("Contact", "<sip:far@192.0.2.9:5099;transport=tcp>")
    return resp


def test_uac_dialog_route_set_and_requests() -> None:
    req = _invite()
    d = Dialog.as_uac(req, _ok(req, "<sip:p1.example;lr>, <sip:p2.example;lr>"), "udp", None)
    assert d.id == ("c", "ours", "theirs") and d.caller and d.local_cseq == 4
    assert d.route_set == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]  # reversed
    bye = d.request("BYE")
    assert bye.uri == SipUri.parse("sip:far@192.0.2.9:5099;transport=tcp")
    assert bye.headers.get_all("Route") == d.route_set and bye.cseq == (5, "BYE")
    assert bye.to.tag == "theirs" and bye.from_.tag == "ours"
    assert d.next_hop() == SipUri.parse("sip:p2.example;lr")
    ack = d.request("ACK", cseq=4)
    assert ack.cseq == (4, "ACK") and d.local_cseq == 5


def test_strict_router_becomes_the_request_uri() -> None:
    req = _invite()
    d = Dialog.as_uac(req, _ok(req, "<sip:strict.example>"), "udp", None)
    bye = d.request("BYE")
    assert bye.uri == SipUri.parse("sip:strict.example")
    assert bye.headers.get_all("Route")[-1] == "<sip:far@192.0.2.9:5099;transport=tcp>"


def test_uas_dialog() -> None:
    req = _invite()
    req.headers.add("Record-Route", "<sip:p1.example;lr>")
    flow = Target("tcp", "127.0.0.1", 40000)
    d = Dialog.as_uas(req, "mine", "tcp", flow)
    assert d.id == ("c", "mine", "ours") and not d.caller and d.remote_cseq == 4
    assert d.route_set == ["<sip:p1.example;lr>"] and d.flow == flow
    assert d.remote_target == SipUri.parse("sip:fax@127.0.0.1")


def test_manual_timers_run_in_order_and_cancel() -> None:
    timers = ManualTimers()
    fired: list[str] = []
    timers.call_later(2, lambda: fired.append("b"))
    timers.call_later(1, lambda: fired.append("a"))
    h = timers.call_later(1.5, lambda: fired.append("never"))
    h.cancel()
    assert timers.pending() == [1, 2]
    timers.advance(1.2)
    assert fired == ["a"] and timers.now() == pytest.approx(1.2)
    timers.advance(5)
    assert fired == ["a", "b"] and timers.pending() == []
    v = TimerValues(t1=0.1)
    assert v.b == pytest.approx(6.4) and v.d == 32
