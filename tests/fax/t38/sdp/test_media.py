"""Offer/answer for fax streams: G.711 audio, T.38 parameters, rejected streams, o= versions."""

from __future__ import annotations

import pytest

from fax.t38.sdp import (
    PCMA,
    PCMU,
    LocalMedia,
    MediaKind,
    RateManagement,
    SdpOrigin,
    SessionDescription,
    T38Attributes,
    UdpEC,
    build_answer,
    build_offer,
    negotiate,
    offered_kinds,
)
from fax.t38.sip.errors import MediaNotAcceptable, SdpError

US = LocalMedia("127.0.0.1", audio_port=4000, image_port=4002)


def offer_text(*media: str, conn: str = "198.51.100.7") -> str:
    return (f"v=0\r\no=peer 77 1 IN IP4 {conn}\r\ns=-\r\nc=IN IP4 {conn}\r\nt=0 0\r\n"
            + "".join(media))


IMAGE = (
    "m=image 6000 udptl t38\r\n"
    "a=T38FaxVersion:3\r\n"
    "a=T38MaxBitRate:33600\r\n"
    "a=T38FaxFillBitRemoval:1\r\n"
    "a=T38FaxTranscodingMMR\r\n"
    "a=T38FaxTranscodingJBIG:0\r\n"
    "a=T38FaxRateManagement:localTCF\r\n"
    "a=T38FaxMaxBuffer:2000\r\n"
    "a=T38FaxMaxDatagram:1400\r\n"
    "a=T38FaxUdpEC:t38UDPFEC\r\n"
)
AUDIO = (
    "m=audio 7000 RTP/AVP 18 0 8 101\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:30\r\n"
)


def test_t38_attributes_read_both_flag_forms() -> None:
    sd = SessionDescription.parse(offer_text(IMAGE))
    p = T38Attributes.from_media(sd.media[0])
    assert p == T38Attributes(version=3, max_bit_rate=33600, fill_bit_removal=True,
                          transcoding_mmr=True, transcoding_jbig=False,
                          rate_management=RateManagement.LOCAL_TCF, max_buffer=2000,
                          max_datagram=1400, udp_ec=UdpEC.FEC)


def test_t38_defaults_when_attributes_absent() -> None:
    sd = SessionDescription.parse(offer_text("m=image 6000 udptl t38\r\n"))
    p = T38Attributes.from_media(sd.media[0])
    assert (p.version, p.max_bit_rate, p.udp_ec, p.max_datagram) == (0, 14400, UdpEC.NONE, None)


@pytest.mark.parametrize("line", ["a=T38FaxVersion:zero\r\n", "a=T38MaxBitRate:\r\n",
                                  "a=T38FaxRateManagement:sometimes\r\n"])
def test_malformed_t38_values(line: str) -> None:
    sd = SessionDescription.parse(offer_text("m=image 6000 udptl t38\r\n" + line))
    with pytest.raises(SdpError):
        T38Attributes.from_media(sd.media[0])


def test_answer_t38_takes_the_lower_version_rate_and_ec() -> None:
    offer = SessionDescription.parse(offer_text(IMAGE))
    answer, neg = build_answer(offer, US, SdpOrigin("127.0.0.1"))
    [m] = answer.media
    assert (m.kind, m.port, m.proto, m.formats) == ("image", 4002, "udptl", ["t38"])
    ours = T38Attributes.from_media(m)
    # We support version 0, 14400 bit/s and redundancy; no fill-bit removal, no MMR.
    assert ours.version == 0 and ours.max_bit_rate == 14400
    assert ours.udp_ec is UdpEC.REDUNDANCY
    assert not ours.fill_bit_removal and not ours.transcoding_mmr
    assert ours.rate_management is RateManagement.LOCAL_TCF  # the offerer's choice
    assert (ours.max_buffer, ours.max_datagram) == (2000, 400)  # our own receive limits
    assert neg.kind is MediaKind.IMAGE and (neg.remote_address, neg.remote_port) == (
        "198.51.100.7", 6000)
    assert neg.remote_max_datagram == 1400 and neg.t38 == ours


def test_answer_keeps_capabilities_both_support() -> None:
    local = LocalMedia("127.0.0.1", image_port=5000, t38=T38Attributes(
        version=3, max_bit_rate=9600, fill_bit_removal=True, transcoding_mmr=True,
        udp_ec=UdpEC.FEC, max_datagram=512))
    offer = SessionDescription.parse(offer_text(IMAGE))
    _, neg = build_answer(offer, local, SdpOrigin("127.0.0.1"))
    assert neg.t38 is not None
    assert (neg.t38.version, neg.t38.max_bit_rate, neg.t38.udp_ec) == (3, 9600, UdpEC.FEC)
    assert neg.t38.fill_bit_removal and neg.t38.transcoding_mmr and not neg.t38.transcoding_jbig


def test_answer_offer_without_ec_gets_none() -> None:
    offer = SessionDescription.parse(offer_text("m=image 6000 udptl t38\r\n"
                                                "a=T38FaxUdpEC:t38UDPNoEC\r\n"))
    answer, neg = build_answer(offer, US, SdpOrigin("127.0.0.1"))
    assert neg.t38 is not None and neg.t38.udp_ec is UdpEC.NONE
    assert answer.media[0].attr("T38FaxUdpEC") is None


def test_answer_audio_picks_the_offerers_first_g711_and_events() -> None:
    offer = SessionDescription.parse(offer_text(AUDIO))
    answer, neg = build_answer(offer, US, SdpOrigin("127.0.0.1"))
    [m] = answer.media
    assert m.formats == ["0", "101"] and m.port == 4000
    assert neg.codec == PCMU and neg.telephone_event == 101 and neg.ptime == 30
    assert m.attr("ptime") is not None and m.attr("ptime").value == "30"  # type: ignore[union-attr]


def test_answer_prefers_image_and_rejects_the_rest_with_port_0() -> None:
    offer = SessionDescription.parse(offer_text(AUDIO, IMAGE, "m=video 8000 RTP/AVP 31\r\n"))
    answer, neg = build_answer(offer, US, SdpOrigin("127.0.0.1"))
    assert [(m.kind, m.port) for m in answer.media] == [("audio", 0), ("image", 4002),
                                                          ("video", 0)]
    assert neg.kind is MediaKind.IMAGE
    _, neg_audio = build_answer(offer, US, SdpOrigin("127.0.0.1"), prefer=MediaKind.AUDIO)
    assert neg_audio.kind is MediaKind.AUDIO


def test_nothing_acceptable() -> None:
    offer = SessionDescription.parse(offer_text("m=audio 7000 RTP/AVP 18\r\n"
                                                "m=video 8000 RTP/AVP 31\r\n"))
    with pytest.raises(MediaNotAcceptable):
        build_answer(offer, US, SdpOrigin("127.0.0.1"))
    audio_only = LocalMedia("127.0.0.1", audio_port=4000)
    with pytest.raises(MediaNotAcceptable):
        build_answer(SessionDescription.parse(offer_text(IMAGE)), audio_only,
                     SdpOrigin("127.0.0.1"))


def test_direction_is_mirrored() -> None:
    offer = SessionDescription.parse(offer_text("m=audio 7000 RTP/AVP 8\r\na=sendonly\r\n"))
    answer, neg = build_answer(offer, US, SdpOrigin("127.0.0.1"))
    assert neg.direction == "recvonly" and answer.media[0].attr("recvonly") is not None
    assert neg.codec == PCMA


def test_offer_and_negotiate_round_trip() -> None:
    a_origin, b_origin = SdpOrigin("127.0.0.1"), SdpOrigin("127.0.0.2")
    b = LocalMedia("127.0.0.2", audio_port=5000, image_port=5002,
                   t38=T38Attributes(version=1, max_bit_rate=9600, max_datagram=300,
                                 udp_ec=UdpEC.FEC))
    offer = build_offer(US, MediaKind.IMAGE, a_origin)
    assert offered_kinds(offer) == [MediaKind.IMAGE]
    answer, b_neg = build_answer(SessionDescription.parse(offer.serialize()), b, b_origin)
    a_neg = negotiate(offer, SessionDescription.parse(answer.serialize()), US)
    assert a_neg.kind is MediaKind.IMAGE and a_neg.remote_port == 5002
    assert a_neg.t38 is not None and b_neg.t38 is not None
    assert (a_neg.t38.version, a_neg.t38.max_bit_rate) == (0, 9600)
    assert a_neg.t38.udp_ec is UdpEC.REDUNDANCY == b_neg.t38.udp_ec
    assert a_neg.remote_max_datagram == 300 and b_neg.remote_max_datagram == 400


def test_negotiate_refuses_a_rejected_or_mismatched_answer() -> None:
    offer = build_offer(US, MediaKind.IMAGE, SdpOrigin("127.0.0.1"))
    rejected = SessionDescription.parse(offer_text("m=image 0 udptl t38\r\n"))
    with pytest.raises(MediaNotAcceptable):
        negotiate(offer, rejected, US)
    two = SessionDescription.parse(offer_text(IMAGE, AUDIO))
    with pytest.raises(SdpError, match="m-lines"):
        negotiate(offer, two, US)
    swapped = SessionDescription.parse(offer_text(AUDIO))
    with pytest.raises(SdpError, match="m=audio"):
        negotiate(offer, swapped, US)


def test_origin_version_moves_only_when_the_sdp_changes() -> None:
    origin = SdpOrigin("127.0.0.1", session_id=42)
    first = build_offer(US, MediaKind.AUDIO, origin)
    again = build_offer(US, MediaKind.AUDIO, origin)
    image = build_offer(US, MediaKind.IMAGE, origin)
    assert first.origin.session_id == again.origin.session_id == image.origin.session_id == 42
    assert first.origin.version == again.origin.version  # a refresh: same SDP, same version
    assert image.origin.version == first.origin.version + 1
    assert first.serialize() == again.serialize()


def test_offer_needs_a_port() -> None:
    with pytest.raises(MediaNotAcceptable):
        build_offer(LocalMedia("127.0.0.1", audio_port=4000), MediaKind.IMAGE,
                    SdpOrigin("127.0.0.1"))


def test_offer_contents() -> None:
    audio = build_offer(US, MediaKind.AUDIO, SdpOrigin("127.0.0.1")).serialize()
    assert "m=audio 4000 RTP/AVP 8 0 101\r\n" in audio
    assert "a=rtpmap:101 telephone-event/8000\r\n" in audio and "c=IN IP4 127.0.0.1" in audio
    image = build_offer(US, MediaKind.IMAGE, SdpOrigin("127.0.0.1")).serialize()
    for line in ("m=image 4002 udptl t38", "a=T38FaxVersion:0", "a=T38MaxBitRate:14400",
                 "a=T38FaxRateManagement:transferredTCF", "a=T38FaxMaxBuffer:2000",
                 "a=T38FaxMaxDatagram:400", "a=T38FaxUdpEC:t38UDPRedundancy"):
        assert line + "\r\n" in image
    v6 = build_offer(LocalMedia("::1", audio_port=1), MediaKind.AUDIO, SdpOrigin("::1"))
    assert "c=IN IP6 ::1" in v6.serialize() and "IN IP6 ::1" in v6.origin.serialize()
