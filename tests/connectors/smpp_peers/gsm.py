"""GSM 03.38 for the test peers: the default alphabet and its extension table, written out
from 3GPP TS 23.038 so that the peers and the tests do not lean on the gateway's codec.

SMPP carries GSM-7 unpacked (one septet per octet, data_coding 0)."""

from __future__ import annotations

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_ENCODE = {ch: bytes([i]) for i, ch in enumerate(BASIC) if i != 0x1B}
_ENCODE.update({ch: bytes([0x1B, code]) for code, ch in EXTENSION.items()})
assert len(BASIC) == 128


def encode(text: str) -> bytes:
    """Unpacked GSM-7 septets of ``text`` (KeyError for a character outside GSM-7)."""
    return b"".join(_ENCODE[ch] for ch in text)


def decode(data: bytes) -> str:
    """The text of unpacked GSM-7 septets."""
    out = []
    escape = False
    for b in data:
        if escape:
            out.append(EXTENSION.get(b, " "))
            escape = False
        elif b == 0x1B:
            escape = True
        else:
            out.append(BASIC[b & 0x7F])
    return "".join(out)


def concat_parts(payloads: list[bytes], ref: int) -> list[bytes]:
    """short_message bodies with an 8-bit-reference concatenation UDH (05 00 03 ref n i)."""
    n = len(payloads)
    return [bytes([5, 0, 3, ref & 0xFF, n, i]) + p for i, p in enumerate(payloads, 1)]
