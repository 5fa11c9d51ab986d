"""SIP message parsing and serializing: compact forms, folding, Via lists, framing, limits."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fax.t38.sip.errors import MessageTooLarge, SipParseError
from fax.t38.sip.message import (
    MAX_MESSAGE_SIZE,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    parse_message,
)
from fax.t38.sip.uri import Address, SipUri, Via

INVITE = (
    "INVITE sip:+4930123@trunk.example.net;user=phone SIP/2.0\r\n"
    "v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK111;rport, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK2\r\n"
    "Via: SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK3;received=2001:db8::9\r\n"
    "Max-Forwards: 69\r\n"
    'f: "Fax, Inc." <sip:+4940999@trunk.example.net>;tag=abc\r\n'
    "t: <sip:+4930123@trunk.example.net>\r\n"
    "i: 1234@10.0.0.1\r\n"
    "CSeq: 7 INVITE\r\n"
    "m: <sip:caller@10.0.0.1:5060;transport=udp>;expires=60\r\n"
    "Subject: a folded\r\n"
    "  header\r\n"
    "k: timer, 100rel\r\n"
    "c: application/sdp\r\n"
    "l: 5\r\n"
    "\r\n"
    "v=0\r\nEXTRA"
)


def test_parse_compact_and_folded_headers() -> None:
    msg = parse_message(INVITE.encode())
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.uri.user == "+4930123"
    assert msg.uri.params == {"user": "phone"}
    assert msg.call_id == "1234@10.0.0.1" and msg.cseq == (7, "INVITE")
    assert [v.branch for v in msg.vias] == ["z9hG4bK111", "z9hG4bK2", "z9hG4bK3"]
    assert msg.vias[1].sent_by == ("10.0.0.2", 5060) and msg.vias[2].host == "[2001:db8::9]"
    assert msg.from_.display == "Fax, Inc." and msg.from_.tag == "abc"
    assert msg.to.tag is None
    contact = msg.contact
    assert contact is not None and contact.params == {"expires": "60"}
    assert contact.uri.transport == "udp"
    assert msg.headers.get("Subject") == "a folded header"
    assert msg.headers.tokens("Supported") == {"timer", "100rel"}
    assert msg.content_type == "application/sdp"
    assert msg.body == b"v=0\r\n"  # Content-Length cuts the datagram's tail


def test_serialize_uses_long_names_and_sets_content_length() -> None:
    msg = parse_message(INVITE.encode())
    wire = msg.encode().decode()
    assert wire.startswith("INVITE sip:+4930123@trunk.example.net;user=phone SIP/2.0\r\n")
    assert "\r\nCall-ID: 1234@10.0.0.1\r\n" in wire and "\r\nFrom: " in wire
    assert wire.endswith("Content-Length: 5\r\n\r\nv=0\r\n")
    again = parse_message(wire.encode())
    assert isinstance(again, SipRequest) and list(again.headers) == list(msg.headers)


def test_response_parse_and_make_response() -> None:
    req = parse_message(INVITE.encode())
    assert isinstance(req, SipRequest)
    resp = make_response(req, 486, to_tag="xyz")
    assert resp.reason == "Busy Here" and resp.to.tag == "xyz"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    parsed = parse_message(resp.encode())
    assert isinstance(parsed, SipResponse) and parsed.status == 486
    trying = make_response(req, 100, to_tag="xyz")
    assert trying.to.tag is None  # 100 Trying never carries a To tag


def test_stream_framing_by_content_length() -> None:
    one = parse_message(INVITE.encode()).encode()
    parser = StreamParser()
    out = parser.feed(b"\r\n\r\n" + one[:50])  # keep-alives, then half a message
    assert out == []
    out = parser.feed(one[50:] + one + one[:10])
    assert len(out) == 2 and all(m.body == b"v=0\r\n" for m in out)
    assert parser.feed(one[10:])[0].call_id == "1234@10.0.0.1"


def test_stream_requires_content_length_and_limits_size() -> None:
    no_len = INVITE.replace("l: 5\r\n", "").split("\r\n\r\n")[0] + "\r\n\r\n"
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamParser().feed(no_len.encode())
    huge = INVITE.replace("l: 5", f"l: {MAX_MESSAGE_SIZE}")
    with pytest.raises(MessageTooLarge):
        StreamParser().feed(huge.encode())
    with pytest.raises(MessageTooLarge):
        StreamParser(max_size=100).feed(b"X" * 200)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("i: 1234@10.0.0.1\r\n", ""), "Call-ID"),
        (("CSeq: 7 INVITE", "CSeq: 7 BYE"), "does not match"),
        (("CSeq: 7 INVITE", "CSeq: seven INVITE"), "CSeq"),
        (("Max-Forwards: 69", "Max-Forwards: many"), "Max-Forwards"),
        (("SIP/2.0\r\nv:", "SIP/3.0\r\nv:"), "request line"),
        (("f: ", "f "), "header line"),
        (('f: "Fax, Inc." <sip:', 'f: "Fax, Inc." <sop:'), "sip/sips"),
        (("l: 5", "l: 500"), "shorter"),
        (("l: 5", "l: five"), "Content-Length"),
    ],
)
def test_malformed_messages(change: tuple[str, str], words: str) -> None:
    with pytest.raises(SipParseError, match=words):
        parse_message(INVITE.replace(*change).encode())


def test_limits() -> None:
    with pytest.raises(MessageTooLarge):
        parse_message(b"X" * (MAX_MESSAGE_SIZE + 1))
    many = INVITE.replace("Max-Forwards: 69\r\n", "X-A: 1\r\n" * 250)
    with pytest.raises(SipParseError, match="header lines"):
        parse_message(many.encode())
    vias = INVITE.replace("Max-Forwards: 69\r\n", "Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n" * 40)
    with pytest.raises(SipParseError, match="Via"):
        parse_message(vias.encode())


def test_status_line() -> None:
    text = ("SIP/2.0 183 Session Progress\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            "From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n")
    msg = parse_message(text.encode())
    assert isinstance(msg, SipResponse) and (msg.status, msg.reason) == (183, "Session Progress")
    with pytest.raises(SipParseError, match="status line"):
        parse_message(text.replace("183", "18").encode())


def test_uri_forms() -> None:
    u = SipUri.parse("sips:alice:pw@[2001:db8::1]:5071;transport=tcp;lr?subject=x")
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sips", "alice", "pw",
                                                            "[2001:db8::1]", 5071)
    assert u.transport == "tls" and u.bare_host == "2001:db8::1" and u.params["lr"] is None
    assert str(u) == "sips:alice:pw@[2001:db8::1]:5071;transport=tcp;lr?subject=x"
    assert SipUri.parse("sip:h").effective_port == 5060
    assert SipUri.parse("sip:h;transport=TLS").effective_port == 5061
    for bad in ("tel:+49", "sip:", "sip:@h", "sip:h:0", "sip:h:port", "sip:[::1"):
        with pytest.raises(SipParseError):
            SipUri.parse(bad)


def test_address_forms() -> None:
    a = Address.parse('"A \\"B\\"" <sip:a@h;transport=tcp>;tag=9;expires=5')
    assert a.display == 'A "B"' and a.uri.params == {"transport": "tcp"}
    assert a.params == {"tag": "9", "expires": "5"}
    assert Address.parse(str(a)) == a
    bare = Address.parse("sip:a@h;tag=1")
    assert bare.uri.params == {} and bare.tag == "1"
    with pytest.raises(SipParseError):
        Address.parse("<sip:a@h")


def test_via_forms() -> None:
    v = Via.parse("SIP / 2.0 / tcp host.example:5080 ;branch=z9hG4bKa ;rport=5 ;received=1.2.3.4")
    assert v.transport == "TCP" and v.sent_by == ("host.example", 5080)
    assert v.params == {"branch": "z9hG4bKa", "rport": "5", "received": "1.2.3.4"}
    with pytest.raises(SipParseError):
        Via.parse("SIP/2.0 UDP h")


@given(st.binary(max_size=600))
@settings(max_examples=300)
def test_arbitrary_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@given(st.lists(st.sampled_from([
    "INVITE sip:a@h SIP/2.0", "SIP/2.0 200 OK", "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
    "v: garbage", "From: <sip:a@h>;tag=1", "f: nope", "To: <sip:b@h>", "t: <sip:b@h",
    "Call-ID: x", "CSeq: 1 INVITE", "CSeq: x", "l: 3", "Content-Length: -1", " folded",
    "Max-Forwards: 70", "m: *", "", "abc"]), max_size=12))
@settings(max_examples=300)
def test_shuffled_header_lines_parse_or_raise_parse_error(lines: list[str]) -> None:
    try:
        msg = parse_message(("\r\n".join(lines) + "\r\n\r\nabc").encode())
    except SipParseError:
        return
    msg.contact  # noqa: B018 -- header accessors raise only SipParseError
