"""G.711 A-law and µ-law (ITU-T G.711) with our own tables (``audioop`` is deprecated).

Samples are 16-bit signed little-endian linear PCM, as spandsp's ``fax_rx``/``fax_tx`` use.
Decoding is two ``bytes.translate`` passes (low and high byte of each sample); encoding
is one table lookup per sample through a 64 Ki-entry table indexed by the signed sample
(Python's negative indexing maps -1 to the last entry), so both run mostly in C.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Callable
from typing import Final

__all__ = ["Codec", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_BIAS: Final = 0x84


def _top_segment(magnitude: int) -> int:
    """The segment (0-8) of a 16-bit magnitude: its top bit above bit 7."""
    return (magnitude | 0xFF).bit_length() - 8


def _ulaw_from_linear(sample: int) -> int:
    if sample < 0:
        magnitude, mask = _BIAS - sample - 1, 0x7F
    else:
        magnitude, mask = _BIAS + sample, 0xFF
    seg = _top_segment(magnitude)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((magnitude >> (seg + 3)) & 0x0F)) ^ mask


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + _BIAS) << ((code & 0x70) >> 4)
    return _BIAS - t if code & 0x80 else t - _BIAS


def _alaw_from_linear(sample: int) -> int:
    if sample >= 0:
        magnitude, mask = sample, 0xD5
    else:
        magnitude, mask = -sample - 1, 0x55
    seg = _top_segment(magnitude)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((magnitude >> (seg + 3 if seg else 4)) & 0x0F)) ^ mask


def _alaw_to_linear(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


def _tables(
    to_linear: Callable[[int], int], from_linear: Callable[[int], int]
) -> tuple[bytes, bytes, bytes]:
    linear = [to_linear(code) & 0xFFFF for code in range(256)]
    low = bytes(v & 0xFF for v in linear)
    high = bytes(v >> 8 for v in linear)
    # Entry i for 0 <= i < 32768 encodes i; entry 65536 + s encodes the negative sample s.
    enc = bytes(from_linear(i if i < 32768 else i - 65536) for i in range(65536))
    return low, high, enc


_U_LOW, _U_HIGH, _U_ENC = _tables(_ulaw_to_linear, _ulaw_from_linear)
_A_LOW, _A_HIGH, _A_ENC = _tables(_alaw_to_linear, _alaw_from_linear)
_LITTLE: Final = sys.byteorder == "little"


def _decode(data: bytes, low: bytes, high: bytes) -> bytes:
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(low)
    out[1::2] = data.translate(high)
    return bytes(out)


def _encode(pcm: bytes, table: bytes) -> bytes:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if not _LITTLE:
        samples.byteswap()
    return bytes(map(table.__getitem__, samples))


def ulaw_decode(data: bytes) -> bytes:
    """µ-law octets → 16-bit little-endian linear samples."""
    return _decode(data, _U_LOW, _U_HIGH)


def alaw_decode(data: bytes) -> bytes:
    """A-law octets → 16-bit little-endian linear samples."""
    return _decode(data, _A_LOW, _A_HIGH)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear samples → µ-law octets."""
    return _encode(pcm, _U_ENC)


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit little-endian linear samples → A-law octets."""
    return _encode(pcm, _A_ENC)


class Codec:
    """One G.711 law by its RTP name: ``PCMU`` (payload type 0) or ``PCMA`` (8)."""

    PAYLOAD_TYPES: Final = {"PCMU": 0, "PCMA": 8}

    def __init__(self, name: str) -> None:
        upper = name.upper()
        if upper not in self.PAYLOAD_TYPES:
            raise ValueError(f"not a G.711 codec: {name!r} (PCMU or PCMA)")
        self.name = upper
        self.payload_type = self.PAYLOAD_TYPES[upper]
        self.encode = ulaw_encode if upper == "PCMU" else alaw_encode
        self.decode = ulaw_decode if upper == "PCMU" else alaw_decode
        self.silence = self.encode(bytes(2))
