"""SDP text: parsing real-world bodies, refusing malformed ones, round trips (hypothesis)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fax.t38.sdp import Attribute, Connection, Media, Origin, SessionDescription
from fax.t38.sip.errors import SdpError

# An Asterisk-style re-INVITE to T.38 (as carriers send it).
T38_OFFER = (
    "v=0\r\n"
    "o=- 1710 1712 IN IP4 192.0.2.10\r\n"
    "s=Asterisk\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "t=0 0\r\n"
    "m=image 4000 udptl t38\r\n"
    "a=T38FaxVersion:0\r\n"
    "a=T38MaxBitRate:14400\r\n"
    "a=T38FaxFillBitRemoval\r\n"
    "a=T38FaxRateManagement:transferredTCF\r\n"
    "a=T38FaxMaxBuffer:400\r\n"
    "a=T38FaxMaxDatagram:400\r\n"
    "a=T38FaxUdpEC:t38UDPRedundancy\r\n"
)


def test_parse_t38_offer() -> None:
    sd = SessionDescription.parse(T38_OFFER)
    assert sd.origin == Origin("-", 1710, 1712, "192.0.2.10")
    assert sd.connection == Connection("192.0.2.10")
    [m] = sd.media
    assert (m.kind, m.port, m.proto, m.formats) == ("image", 4000, "udptl", ["t38"])
    assert m.attr("t38faxversion") == Attribute("T38FaxVersion", "0")
    assert m.attr("T38FaxFillBitRemoval") == Attribute("T38FaxFillBitRemoval", None)
    assert sd.connection_for(m) == sd.connection


def test_serialize_round_trip_keeps_unknown_lines() -> None:
    text = (
        "v=0\r\no=alice 1 2 IN IP6 2001:db8::1\r\ns=-\r\ni=info\r\nc=IN IP6 2001:db8::1\r\n"
        "b=AS:64\r\nt=0 0\r\na=tool:x\r\nm=audio 5004/2 RTP/AVP 0 8 101\r\nb=AS:64\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\nm=video 0 RTP/AVP 31\r\n"
    )
    sd = SessionDescription.parse(text)
    assert sd.serialize() == text
    assert sd.media[0].port_count == 2 and sd.media[1].rejected


def test_lf_line_ends_and_bytes() -> None:
    sd = SessionDescription.parse(T38_OFFER.replace("\r\n", "\n").encode())
    assert sd.media[0].attr("T38FaxUdpEC") == Attribute("T38FaxUdpEC", "t38UDPRedundancy")


def test_media_level_connection() -> None:
    sd = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 5000 RTP/AVP 0\r\nc=IN IP4 10.0.0.2\r\n"
    )
    assert sd.connection is None and sd.connection_for(sd.media[0]) == Connection("10.0.0.2")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("o=- 1 1 IN IP4 1.2.3.4\r\n", "v=0"),
        ("v=1\r\n", "v=0"),
        ("v=0\r\ns=-\r\n", "no o="),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "no s="),
        ("v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n", "session id"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "malformed o="),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 bad_host!\r\n", "address"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IPX 1.2.3.4\r\n", "address type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=ATM IP4 1.2.3.4\r\n", "network type"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 99999 RTP/AVP 0\r\n", "port"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP\r\n", "m= line"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP 0\r\n", "no c="),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=now\r\n", "t= line"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nx y\r\n", "malformed SDP line"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nq=1\r\n", "unknown"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=:x\r\n", "attribute"),
        ("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.1.1.1\r\nm=audio 1 RTP/AVP 0\r\n"
         "c=IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.1\r\n", "more than one c="),
    ],
)
def test_malformed_sdp_is_refused(text: str, words: str) -> None:
    with pytest.raises(SdpError, match=words):
        SessionDescription.parse(text)


def test_oversized_and_non_utf8() -> None:
    with pytest.raises(SdpError, match="larger"):
        SessionDescription.parse(b"v=0\r\n" + b"a=x\r\n" * 5000)
    with pytest.raises(SdpError, match="UTF-8"):
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")


@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
@settings(max_examples=300)
def test_arbitrary_input_parses_or_raises_sdp_error(data: str | bytes) -> None:
    try:
        sd = SessionDescription.parse(data)
    except SdpError:
        return
    SessionDescription.parse(sd.serialize())  # whatever parsed serializes parseably


@given(st.lists(st.sampled_from(["v=0", "o=- 1 2 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1",
                                 "t=0 0", "m=image 4000 udptl t38", "a=T38FaxVersion:x",
                                 "m=audio 0 RTP/AVP 0", "a=sendrecv", "b=AS:1", "k=clear:x",
                                 "m=audio 5 RTP/AVP", "c=IN IP4", "i=x", "z=0 0"]),
                max_size=12))
@settings(max_examples=300)
def test_shuffled_lines_parse_or_raise_sdp_error(lines: list[str]) -> None:
    with contextlib.suppress(SdpError):
        SessionDescription.parse("\r\n".join(lines))


_tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._",
                  min_size=1, max_size=12)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_attrs = st.lists(st.builds(Attribute, _tokens, st.one_of(st.none(), _tokens)), max_size=5)
_media = st.builds(
    Media,
    kind=st.sampled_from(["audio", "image", "video"]),
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "udptl"]),
    formats=st.lists(_tokens, min_size=1, max_size=4),
    connection=st.builds(Connection, _ipv4),
    attributes=_attrs,
)


@given(
    origin=st.builds(Origin, _tokens, st.integers(0, 2**62), st.integers(0, 2**62), _ipv4),
    connection=st.one_of(st.none(), st.builds(Connection, _ipv4)),
    attributes=_attrs,
    media=st.lists(_media, max_size=3),
)
@settings(max_examples=200)
def test_round_trip(
    origin: Origin, connection: Connection | None, attributes: list[Attribute],
    media: list[Media],
) -> None:
    sd = SessionDescription(origin=origin, connection=connection, attributes=attributes,
                            media=media)
    again = SessionDescription.parse(sd.serialize())
    assert again == sd
