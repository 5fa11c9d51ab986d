"""Texts into submit_sm (UDH, SAR, payload; GSM-7 packed or not; UCS-2) and back."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.smpp import gsm7
from connectors.smpp import pdu as P
from connectors.smpp.content import (
    build_submits,
    concat_ref,
    inbound_number,
    read_deliver,
    source_address,
)
from connectors.smpp.options import parse_options
from connectors.smpp.udh import Concat

OPTS = parse_options("sms1", {"host": "127.0.0.1", "system_id": "gw"})
SENDER, TO = "+4915112345671", "+4917612345678"


def decoded(body: bytes) -> P.Pdu:
    return P.decode(P.with_header(P.SUBMIT_SM, 1, body))


def test_single_part() -> None:
    s = build_submits("msg_1", SENDER, TO, "Grüße aus Köln", OPTS)
    assert (s.parts, s.encoding, s.data_coding, len(s.bodies)) == (1, "gsm7", 0, 1)
    pdu = decoded(s.bodies[0])
    f = pdu.fields
    assert (f["source_addr_ton"], f["source_addr_npi"], f["source_addr"]) == (1, 1, "4915112345671")
    assert (f["dest_addr_ton"], f["dest_addr_npi"], f["destination_addr"]) == (
        1,
        1,
        "4917612345678",
    )
    assert f["esm_class"] == 0 and f["registered_delivery"] == 1
    assert gsm7.decode(f["short_message"]) == "Grüße aus Köln"


def test_three_parts_by_udh() -> None:
    text = "a" * 307  # 153 + 153 + 1
    s = build_submits("msg_1", SENDER, TO, text, OPTS)
    assert s.parts == 3 and len(s.bodies) == 3
    ref = concat_ref("msg_1", 8)
    texts = []
    for i, body in enumerate(s.bodies, 1):
        f = decoded(body).fields
        assert f["esm_class"] == 0x40
        sm = f["short_message"]
        assert sm[:6] == bytes([0x05, 0x00, 0x03, ref, 3, i])
        texts.append(gsm7.decode(sm[6:]))
    assert [len(t) for t in texts] == [153, 153, 1] and "".join(texts) == text
    # A retried send builds the same reference, so a handset can merge the parts.
    assert build_submits("msg_1", SENDER, TO, text, OPTS).bodies == s.bodies


def test_escape_pair_is_not_split() -> None:
    text = "a" * 152 + "€" + "b" * 7  # 161 septets: two parts
    s = build_submits("m", SENDER, TO, text, OPTS)
    first = decoded(s.bodies[0]).fields["short_message"][6:]
    assert first == b"a" * 152  # the € moved whole into part 2
    assert gsm7.decode(decoded(s.bodies[1]).fields["short_message"][6:]) == "€bbbbbbb"


def test_sar_tlvs() -> None:
    opts = dataclasses.replace(OPTS, long_messages="sar")
    s = build_submits("msg_2", SENDER, TO, "ж" * 71, opts)
    assert (s.parts, s.data_coding) == (2, 8)
    for i, body in enumerate(s.bodies, 1):
        pdu = decoded(body)
        assert pdu.fields["esm_class"] == 0
        assert P.tlv_int(pdu, P.TAG_SAR_MSG_REF_NUM) == concat_ref("msg_2", 16)
        assert P.tlv_int(pdu, P.TAG_SAR_TOTAL_SEGMENTS) == 2
        assert P.tlv_int(pdu, P.TAG_SAR_SEGMENT_SEQNUM) == i
    first = decoded(s.bodies[0]).fields["short_message"]
    assert first.decode("utf-16-be") == "ж" * 67


def test_payload_sends_one_submit() -> None:
    opts = dataclasses.replace(OPTS, long_messages="payload")
    text = "Hello 😀 " * 20
    s = build_submits("m", SENDER, TO, text, opts)
    assert len(s.bodies) == 1 and s.parts == 3 and s.data_coding == 8
    pdu = decoded(s.bodies[0])
    assert pdu.fields["short_message"] == b""
    assert pdu.tlvs[P.TAG_MESSAGE_PAYLOAD].decode("utf-16-be") == text


def test_packed_gsm7_with_udh() -> None:
    opts = dataclasses.replace(OPTS, gsm7_packing=True)
    text = "x" * 200
    s = build_submits("m", SENDER, TO, text, opts)
    sm = decoded(s.bodies[0]).fields["short_message"]
    assert len(sm) == 6 + 134  # 153 septets + 1 fill bit = 1072 bits = 134 octets
    assert gsm7.decode(gsm7.unpack(sm[6:], 153, fill_bits=1)) == "x" * 153


def test_source_addresses() -> None:
    assert source_address("+4915112345671", OPTS) == (1, 1, "4915112345671")
    assert source_address("ACME", OPTS) == (5, 0, "ACME")
    assert source_address("12345", OPTS) == (0, 1, "12345")
    forced = dataclasses.replace(OPTS, source_ton=3, source_npi=0)
    assert source_address("12345", forced) == (3, 0, "12345")


def test_sender_too_long_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="source_addr"):
        build_submits("m", "A" * 21, TO, "hi", OPTS)


@pytest.mark.parametrize(
    ("ton", "addr", "expected"),
    [
        (1, "4917612345678", "+4917612345678"),
        (0, "4917612345678", "+4917612345678"),
        (0, "004917612345678", "+4917612345678"),
        (2, "017612345678", "017612345678"),
        (0, "017612345678", "017612345678"),
        (5, "ACME", "ACME"),
        (0, "+4917612345678", "+4917612345678"),
        (3, "12345", "12345"),
    ],
)
def test_inbound_numbers(ton: int, addr: str, expected: str) -> None:
    assert inbound_number(ton, addr) == expected


def deliver(short_message: bytes, *, esm: int = 0, dc: int = 0, tlvs: bytes = b"") -> P.Pdu:
    fields = {
        "source_addr_ton": 1,
        "source_addr": "4917612345678",
        "dest_addr_ton": 1,
        "destination_addr": "4915112345671",
        "esm_class": esm,
        "data_coding": dc,
        "short_message": short_message,
    }
    return P.decode(P.encode(P.DELIVER_SM, 1, fields, tlvs=tlvs))


def test_read_deliver_variants() -> None:
    r = read_deliver(deliver(gsm7.encode("Hallo €")), packed=False)
    assert (r.source, r.dest, r.text, r.concat) == (
        "+4917612345678",
        "+4915112345671",
        "Hallo €",
        None,
    )
    r = read_deliver(
        deliver(b"\x05\x00\x03\x09\x02\x02" + "жж".encode("utf-16-be"), esm=0x40, dc=8),
        packed=False,
    )
    assert r.text == "жж" and r.concat == Concat(9, 2, 2)
    r = read_deliver(
        deliver(b"\x06\x08\x04\x01\x02\x02\x01" + gsm7.pack(gsm7.encode("hi")), esm=0x40),
        packed=True,
    )
    assert r.text == "hi" and r.concat == Concat(0x0102, 2, 1)
    sar = (
        P.tlv_u16(P.TAG_SAR_MSG_REF_NUM, 300)
        + P.tlv_u8(P.TAG_SAR_TOTAL_SEGMENTS, 3)
        + P.tlv_u8(P.TAG_SAR_SEGMENT_SEQNUM, 3)
    )
    r = read_deliver(deliver(b"end", tlvs=sar), packed=False)
    assert r.concat == Concat(300, 3, 3) and r.text == "end"
    r = read_deliver(
        deliver(b"", dc=3, tlvs=P.tlv(P.TAG_MESSAGE_PAYLOAD, "Grüße".encode("latin-1"))),
        packed=False,
    )
    assert r.text == "Grüße"
    r = read_deliver(deliver(b"hi", dc=0xF4), packed=False)  # class group, 8-bit data
    assert r.text == "hi"
    with pytest.raises(ValueError):
        read_deliver(deliver(b"\x09\x00", esm=0x40), packed=False)
