"""Quota units (the tariff) and the SMS segmentation facts of GSM 03.38 / TS 23.040.

Units are what the provider bills against the monthly allowance; segments are what the
carrier bills. Both are stored on every SMS.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.models import Channel

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the extension table: each costs two septets (ESC + code).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

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
