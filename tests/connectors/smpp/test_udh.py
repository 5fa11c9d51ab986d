"""User data headers: the concatenation elements with 8- and 16-bit references."""

from __future__ import annotations

import pytest

from connectors.smpp.udh import Concat, concat_8, concat_16, parse_concat, split_udh


def test_build_and_parse_8_bit() -> None:
    udh = concat_8(0x2A, 3, 2)
    assert udh.hex() == "0500032a0302"
    assert parse_concat(udh) == Concat(0x2A, 3, 2)


def test_build_and_parse_16_bit() -> None:
    udh = concat_16(0xBEEF, 4, 4)
    assert udh.hex() == "060804beef0404"
    assert parse_concat(udh) == Concat(0xBEEF, 4, 4)


def test_other_elements_are_skipped() -> None:
    # A port-addressing element (IEI 0x05) before the concatenation element.
    udh = bytes([0x0B, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x00, 0x03, 0x07, 0x02, 0x01])
    assert parse_concat(udh) == Concat(7, 2, 1)


@pytest.mark.parametrize("udh", ["050003070300", "050003070004", "0500030703", "03050400"])
def test_invalid_concat_elements(udh: str) -> None:
    assert parse_concat(bytes.fromhex(udh)) is None


def test_split_udh() -> None:
    assert split_udh(b"\x05\x00\x03\x01\x02\x01hello") == (b"\x05\x00\x03\x01\x02\x01", b"hello")
    with pytest.raises(ValueError):
        split_udh(b"\x09\x00\x03")
    with pytest.raises(ValueError):
        split_udh(b"")
