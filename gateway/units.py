"""Quota units (the tariff) and the SMS segmentation facts of GSM 03.38 / TS 23.040.

Units are what the provider bills against the monthly allowance; segments are what the
carrier bills. Both are stored on every SMS.

Public: the one GSM 03.38 table is here; the SMPP codec (``connectors/smpp/gsm7.py``)
encodes and packs septets with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.models import Channel

# The default alphabet of 3GPP TS 23.038, index = septet value. 0x1B is the escape to the
# extension table, not a character: it holds a no-break space as a placeholder (never
# sent, and what a lone escape is shown as).
GSM7_ESC = 0x1B
GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\xa0ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: septet after the escape → character.
GSM7_EXTENSION_TABLE: Mapping[int, str] = MappingProxyType(
    {
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
)
GSM7_BASIC = frozenset(ch for i, ch in enumerate(GSM7_TABLE) if i != GSM7_ESC)
# Characters of the extension table: each costs two septets (ESC + code).
GSM7_EXTENSION = frozenset(GSM7_EXTENSION_TABLE.values())

# Per-part capacity: (single message, part of a concatenated message with an 8-bit-ref UDH).
GSM7_LIMITS = (160, 153)
UCS2_LIMITS = (70, 67)


def encoding_for(text: str) -> str:
    """``gsm7`` when every character is in the GSM 03.38 tables, else ``ucs2``."""
    for ch in text:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION:
            return "ucs2"
    return "gsm7"


def _cost_gsm7(ch: str) -> int:
    return 2 if ch in GSM7_EXTENSION else 1


def _cost_ucs2(ch: str) -> int:
    return 2 if ord(ch) > 0xFFFF else 1


def split_sms(text: str) -> tuple[str, list[str]]:
    """Split ``text`` into the parts a carrier sends: (encoding, parts).

    An escape pair (GSM-7 extension character) and a surrogate pair (UCS-2 character
    outside the BMP) are never split: they move whole into the next part.
    """
    if GSM7_BASIC.issuperset(text):  # the common case: one septet per character
        if len(text) <= GSM7_LIMITS[0]:
            return "gsm7", [text]
        step = GSM7_LIMITS[1]
        return "gsm7", [text[i : i + step] for i in range(0, len(text), step)]
    encoding = encoding_for(text)
    cost = _cost_gsm7 if encoding == "gsm7" else _cost_ucs2
    single, multi = GSM7_LIMITS if encoding == "gsm7" else UCS2_LIMITS
    total = sum(cost(ch) for ch in text)
    if total <= single:
        return encoding, [text]
    parts: list[str] = []
    start = used = 0
    for i, ch in enumerate(text):
        c = cost(ch)
        if used + c > multi:
            parts.append(text[start:i])
            start, used = i, 0
        used += c
    parts.append(text[start:])
    return encoding, parts


@dataclass(slots=True, frozen=True)
class SmsInfo:
    """Encoding and carrier segments of one SMS text."""

    encoding: str
    segments: int


def sms_info(text: str) -> SmsInfo:
    """Encoding and segment count of ``text`` as a carrier bills it."""
    encoding, parts = split_sms(text)
    return SmsInfo(encoding, len(parts))


@dataclass(slots=True, frozen=True)
class Tariff:
    """Units and prices; defaults follow the provider's price list (all configurable)."""

    included: dict[str, int]
    chars_per_unit: dict[str, int]
    overage_price_micros: dict[str, int]
    thresholds: tuple[int, ...] = (80, 100)

    @classmethod
    def default(cls) -> Tariff:
        """The provider's published defaults."""
        return cls(
            included={"sms": 100, "whatsapp": 1000, "fax": 100},
            chars_per_unit={"sms": 160, "whatsapp": 1000},
            overage_price_micros={"sms": 90_000, "whatsapp": 20_000, "fax": 100_000},
        )

    def units(self, channel: Channel | str, text: str | None, recipients: int = 1) -> int:
        """Quota units of one outbound message.

        SMS: one unit per started 160 characters per recipient. WhatsApp: one unit per
        started 1000 characters, an attachment included. Fax: one unit per fax.
        """
        channel = Channel(channel)
        if channel == Channel.FAX:
            return recipients
        per = self.chars_per_unit[channel.value]
        chars = len(text or "")
        return max(1, math.ceil(chars / per)) * recipients
