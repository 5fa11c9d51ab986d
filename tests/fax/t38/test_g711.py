"""G.711 tables: the reference values of the standard, round trips, lengths."""

from __future__ import annotations

import array
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fax.t38.g711 import Codec, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode


def samples(data: bytes) -> list[int]:
    out = array.array("h")
    out.frombytes(data)
    return out.tolist()


def pcm(values: list[int]) -> bytes:
    return array.array("h", values).tobytes()


def test_reference_values() -> None:
    # G.711: µ-law 0xFF and 0x7F are the two zeros, 0x80/0x00 the extremes (±32124);
    # A-law 0xD5/0x55 are the smallest steps (±8), 0xAA/0x2A the extremes (±32256).
    assert samples(ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00]))) == [0, 0, 32124, -32124]
    assert samples(alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))) == [8, -8, 32256, -32256]
    assert ulaw_encode(pcm([0, 32767, -32768])) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(pcm([0, 32767, -32768])) == bytes([0xD5, 0xAA, 0x2A])


LAWS = [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
Law = Callable[[bytes], bytes]


@pytest.mark.parametrize(("encode", "decode"), LAWS)
def test_every_code_survives_decode_encode(encode: Law, decode: Law) -> None:
    codes = bytes(range(256))
    linear = decode(codes)
    assert decode(encode(linear)) == linear


@pytest.mark.parametrize(("encode", "decode"), LAWS)
def test_encoding_is_monotonic(encode: Law, decode: Law) -> None:
    values = list(range(-32768, 32768, 7))
    back = samples(decode(encode(pcm(values))))
    assert back == sorted(back)


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_quantisation_error_is_bounded(values: list[int]) -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        data = encode(pcm(values))
        assert len(data) == len(values)
        for x, y in zip(values, samples(decode(data)), strict=True):
            assert abs(x - y) <= abs(x) // 16 + 16


@given(st.binary(max_size=400))
def test_decode_takes_any_octets(data: bytes) -> None:
    assert len(ulaw_decode(data)) == 2 * len(data)
    assert len(alaw_decode(data)) == 2 * len(data)


def test_codec_by_name() -> None:
    assert Codec("pcmu").payload_type == 0
    assert Codec("PCMA").payload_type == 8
    assert Codec("PCMA").silence == bytes([0xD5])
    with pytest.raises(ValueError, match=r"G\.711"):
        Codec("G729")
