"""What SDP agreed, handed to the media sessions as their parameters."""

from __future__ import annotations

import pytest

from fax.t38.params import LOCAL_T38, AudioParams, T38Params
from fax.t38.sdp import (
    PCMU,
    AudioCodec,
    LocalMedia,
    MediaKind,
    Negotiated,
    SdpOrigin,
    SessionDescription,
    build_answer,
)
from fax.t38.sdp.session_params import session_params
from fax.t38.sip.errors import MediaNotAcceptable

OFFER = (
    "v=0\r\no=peer 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
    "m=image 6000 udptl t38\r\na=T38FaxVersion:1\r\na=T38MaxBitRate:9600\r\n"
    "a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxBuffer:1024\r\n"
    "a=T38FaxMaxDatagram:272\r\na=T38FaxUdpEC:t38UDPFEC\r\n"
)


def test_t38_takes_settled_values_and_the_far_ends_limits() -> None:
    local = LocalMedia("127.0.0.1", image_port=4002)
    _, neg = build_answer(SessionDescription.parse(OFFER), local, SdpOrigin("127.0.0.1"))
    params = session_params(neg, redundancy=2)
    assert params == T38Params(version=0, max_bit_rate=9600, rate_management="transferredTCF",
                               max_buffer=1024, max_datagram=272, udp_ec="t38UDPRedundancy",
                               redundancy=2)


def test_our_defaults_match_what_the_media_layer_offers() -> None:
    ours = LocalMedia("127.0.0.1", image_port=1).t38
    assert (ours.version, ours.max_bit_rate, ours.max_buffer, ours.max_datagram) == (
        LOCAL_T38.version, LOCAL_T38.max_bit_rate, LOCAL_T38.max_buffer, LOCAL_T38.max_datagram)
    assert ours.udp_ec.value == LOCAL_T38.udp_ec
    assert ours.rate_management.value == LOCAL_T38.rate_management


def test_missing_far_end_limits_take_the_session_defaults() -> None:
    text = OFFER.replace("a=T38FaxMaxBuffer:1024\r\n", "").replace(
        "a=T38FaxMaxDatagram:272\r\n", "")
    _, neg = build_answer(SessionDescription.parse(text), LocalMedia("127.0.0.1", image_port=1),
                          SdpOrigin("127.0.0.1"))
    params = session_params(neg)
    assert isinstance(params, T38Params)
    assert (params.max_buffer, params.max_datagram) == (T38Params().max_buffer,
                                                        T38Params().max_datagram)


def test_audio() -> None:
    neg = Negotiated(MediaKind.AUDIO, "127.0.0.1", 4000, "127.0.0.9", 7000, codec=PCMU,
                     ptime=30)
    assert session_params(neg) == AudioParams(codec="PCMU", payload_type=0, ptime=30)


@pytest.mark.parametrize("neg", [
    Negotiated(MediaKind.AUDIO, "127.0.0.1", 4000, "127.0.0.9", 7000, codec=PCMU, ptime=25),
    Negotiated(MediaKind.AUDIO, "127.0.0.1", 4000, "127.0.0.9", 7000,
               codec=AudioCodec("G729", 18)),
    Negotiated(MediaKind.AUDIO, "127.0.0.1", 4000, "127.0.0.9", 7000),
    Negotiated(MediaKind.IMAGE, "127.0.0.1", 4000, "127.0.0.9", 7000),
])
def test_unusable_agreements_are_not_acceptable(neg: Negotiated) -> None:
    with pytest.raises(MediaNotAcceptable):
        session_params(neg)


def test_tiny_far_end_datagram_is_not_acceptable() -> None:
    text = OFFER.replace("a=T38FaxMaxDatagram:272", "a=T38FaxMaxDatagram:16")
    _, neg = build_answer(SessionDescription.parse(text), LocalMedia("127.0.0.1", image_port=1),
                          SdpOrigin("127.0.0.1"))
    with pytest.raises(MediaNotAcceptable, match="cannot run"):
        session_params(neg)
