"""User data headers (TS 23.040 §9.2.3.24): the concatenation information elements.

A UDH sits at the start of ``short_message`` when esm_class has UDHI (0x40): one length
octet, then information elements (IEI, length, data). Concatenation uses IEI 0x00
(8-bit reference) or 0x08 (16-bit reference).
"""

from __future__ import annotations

from dataclasses import dataclass

UDHI = 0x40
IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08


@dataclass(frozen=True, slots=True)
class Concat:
    """Which part of which concatenated message: reference, total parts, 1-based index."""

    ref: int
    total: int
    seq: int


def concat_8(ref: int, total: int, seq: int) -> bytes:
    """The 6-octet UDH of part ``seq`` of ``total`` with 8-bit reference ``ref``."""
    return bytes((0x05, IEI_CONCAT_8, 0x03, ref & 0xFF, total, seq))


def concat_16(ref: int, total: int, seq: int) -> bytes:
    """The 7-octet UDH with a 16-bit reference."""
    return bytes((0x06, IEI_CONCAT_16, 0x04, (ref >> 8) & 0xFF, ref & 0xFF, total, seq))


def split_udh(short_message: bytes) -> tuple[bytes, bytes]:
    """(UDH incl. its length octet, the rest); raises ValueError when the UDH overruns."""
    if not short_message:
        raise ValueError("UDHI set but short_message is empty")
    n = short_message[0] + 1
    if n > len(short_message):
        raise ValueError(f"UDH of {n} octets in a short_message of {len(short_message)}")
    return short_message[:n], short_message[n:]


def parse_concat(udh: bytes) -> Concat | None:
    """The concatenation element of a UDH (with its length octet), if any and valid."""
    pos, end = 1, len(udh)
    while pos + 2 <= end:
        iei, n = udh[pos], udh[pos + 1]
        data = udh[pos + 2 : pos + 2 + n]
        if len(data) < n:
            return None
        if iei == IEI_CONCAT_8 and n == 3:
            ref, total, seq = data
        elif iei == IEI_CONCAT_16 and n == 4:
            ref, total, seq = (data[0] << 8) | data[1], data[2], data[3]
        else:
            pos += 2 + n
            continue
        # TS 23.040: total 0 and seq outside 1..total make the element invalid; ignore it.
        if total >= 1 and 1 <= seq <= total:
            return Concat(ref, total, seq)
        return None
    return None
