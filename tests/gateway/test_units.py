"""Units and segmentation: the reference table of shared/reference/sms.md, and the tariff."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.units import GSM7_BASIC, GSM7_EXTENSION, Tariff, sms_info, split_sms

REFERENCE = [
    ("Hello", "gsm7", 1),
    ("a" * 160, "gsm7", 1),
    ("a" * 161, "gsm7", 2),
    ("a" * 306, "gsm7", 2),
    ("a" * 307, "gsm7", 3),
    ("Grüße aus Köln", "gsm7", 1),
    ("ä" * 70, "gsm7", 1),
    ("a" * 159 + "€", "gsm7", 2),
    ("Preis: 5€" * 16, "gsm7", 1),
    ("Hello 😀", "ucs2", 1),
    ("ж" * 70, "ucs2", 1),
    ("ж" * 71, "ucs2", 2),
    ("😀" * 35, "ucs2", 1),
]


@pytest.mark.parametrize(("text", "encoding", "segments"), REFERENCE)
def test_reference_counts(text: str, encoding: str, segments: int) -> None:
    info = sms_info(text)
    assert (info.encoding, info.segments) == (encoding, segments)


def test_c_cedilla_is_not_gsm7() -> None:
    assert sms_info("Ç").encoding == "gsm7"
    assert sms_info("ç").encoding == "ucs2"


def test_escape_pair_is_never_split() -> None:
    # 152 'a' + '€' (2 septets) = 154 septets: the euro sign moves whole to part two.
    _, parts = split_sms("a" * 152 + "€" + "b" * 10)
    assert parts[0] == "a" * 152 and parts[1].startswith("€")


def test_surrogate_pair_is_never_split() -> None:
    _, parts = split_sms("ж" * 66 + "😀" + "ж" * 10)
    assert parts[0] == "ж" * 66 and parts[1].startswith("😀")


def septets(part: str) -> int:
    return sum(2 if c in GSM7_EXTENSION else 1 for c in part)


def utf16(part: str) -> int:
    return len(part.encode("utf-16-le")) // 2


GSM_CHARS = sorted(GSM7_BASIC | GSM7_EXTENSION)


@given(st.one_of(st.text(alphabet=GSM_CHARS, max_size=700), st.text(max_size=400)))
def test_parts_reassemble_and_respect_limits(text: str) -> None:
    encoding, parts = split_sms(text)
    assert "".join(parts) == text
    size = septets if encoding == "gsm7" else utf16
    if len(parts) == 1:
        assert size(parts[0]) <= (160 if encoding == "gsm7" else 70)
    else:
        assert all(0 < size(p) <= (153 if encoding == "gsm7" else 67) for p in parts)
    assert sms_info(text).segments == len(parts)


def test_tariff_units() -> None:
    t = Tariff.default()
    assert t.units("sms", "a") == 1
    assert t.units("sms", "a" * 160) == 1
    assert t.units("sms", "a" * 161) == 2
    assert t.units("sms", "a" * 161, recipients=3) == 6
    assert t.units("whatsapp", "a" * 1000) == 1
    assert t.units("whatsapp", "a" * 1001) == 2
    assert t.units("whatsapp", None) == 1  # an attachment alone
    assert t.units("fax", None) == 1
