"""The GSM 03.38 default alphabet (3GPP TS 23.038): septets, the extension table, packing.

``encode`` turns text into septet values (one per octet, extension characters as
ESC + code), ``pack``/``unpack`` move between septets and the 7-bit packed octets of the
air interface, with the fill bits that follow a user data header.
"""

from __future__ import annotations

from gateway.units import GSM7_ESC, GSM7_EXTENSION_TABLE, GSM7_TABLE

# The one GSM 03.38 table lives in the core (``gateway.units``), which counts segments.
ESC = GSM7_ESC
CR = 0x0D
BASIC = GSM7_TABLE
EXTENSION = GSM7_EXTENSION_TABLE
# str.translate table: character → its septet(s) as latin-1 code points.
_ENCODE: dict[int, str] = {ord(ch): chr(i) for i, ch in enumerate(BASIC) if i != ESC}
_ENCODE.update({ord(ch): chr(ESC) + chr(code) for code, ch in EXTENSION.items()})
_ALPHABET = frozenset(chr(c) for c in _ENCODE)


class Gsm7Error(ValueError):
    """Text with a character that the GSM 03.38 tables do not hold."""


def encode(text: str) -> bytes:
    """Septet values of ``text``, one per octet (the SMPP "unpacked" form of data_coding 0)."""
    if not _ALPHABET.issuperset(text):
        bad = next(ch for ch in text if ch not in _ALPHABET)
        raise Gsm7Error(f"{bad!r} is not in the GSM 03.38 alphabet")
    return text.translate(_ENCODE).encode("latin-1")


def decode(septets: bytes) -> str:
    """Text of septet values (unpacked); an escape before an unknown code reads as a space."""
    out: list[str] = []
    i, n = 0, len(septets)
    while i < n:
        s = septets[i] & 0x7F
        if s == ESC and i + 1 < n:
            code = septets[i + 1] & 0x7F
            # TS 23.038: an unknown extension code is shown as the basic-table character.
            out.append(EXTENSION.get(code, BASIC[code] if code != ESC else " "))
            i += 2
            continue
        out.append(" " if s == ESC else BASIC[s])
        i += 1
    return "".join(out)


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets into octets, LSB first, after ``fill_bits`` zero bits (0 to 6, after a UDH).

    When the last octet would leave 7 bits unused, they hold CR (TS 23.038 §6.1.2.3.1) so
    that a receiver does not read a trailing ``@``.
    """
    if not septets:
        return b""
    total_bits = fill_bits + 7 * len(septets)
    if total_bits % 8 == 1:
        septets = septets + bytes((CR,))
        total_bits += 7
    acc = 0
    for i, s in enumerate(septets):
        acc |= (s & 0x7F) << (fill_bits + 7 * i)
    return acc.to_bytes((total_bits + 7) // 8, "little")


def unpack(data: bytes, count: int | None = None, fill_bits: int = 0) -> bytes:
    """Septets of packed ``data``; ``count`` septets when known, else as many as fit.

    Without ``count``, a CR padding septet (see :func:`pack`) at the very end is dropped.
    """
    acc = int.from_bytes(data, "little") >> fill_bits
    avail = (8 * len(data) - fill_bits) // 7
    n = avail if count is None else min(count, avail)
    out = bytes((acc >> (7 * i)) & 0x7F for i in range(n))
    if count is None and n and (fill_bits + 7 * n) % 8 == 0 and out[-1] == CR:
        # 7 spare bits filled with CR by the sender: not part of the message.
        out = out[:-1]
    return out


def fill_bits_after(udh_len: int) -> int:
    """Zero bits between a UDH of ``udh_len`` octets (incl. its length octet) and septets."""
    return (7 - (udh_len * 8) % 7) % 7
