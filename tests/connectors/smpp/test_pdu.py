"""The PDU codec: round trips of every command, TLVs, malformed input, stream framing."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.smpp import pdu as P

SUBMIT_FIELDS = {
    "service_type": "",
    "source_addr_ton": 1,
    "source_addr_npi": 1,
    "source_addr": "4915112345671",
    "dest_addr_ton": 1,
    "dest_addr_npi": 1,
    "destination_addr": "4917612345678",
    "esm_class": 0x40,
    "protocol_id": 0,
    "priority_flag": 0,
    "schedule_delivery_time": "",
    "validity_period": "",
    "registered_delivery": 1,
    "replace_if_present_flag": 0,
    "data_coding": 8,
    "sm_default_msg_id": 0,
    "short_message": b"\x05\x00\x03\x2a\x02\x01\x00h\x00i",
}


@pytest.mark.parametrize("command_id", [P.SUBMIT_SM, P.DELIVER_SM])
def test_sm_round_trip_with_tlvs(command_id: int) -> None:
    tlvs = P.tlv_u16(P.TAG_SAR_MSG_REF_NUM, 0xBEEF) + P.tlv(P.TAG_MESSAGE_PAYLOAD, b"x" * 300)
    frame = P.encode(command_id, 7, SUBMIT_FIELDS, tlvs=tlvs)
    assert struct.unpack(">I", frame[:4])[0] == len(frame)
    pdu = P.decode(frame)
    assert (pdu.command_id, pdu.status, pdu.seq) == (command_id, 0, 7)
    assert pdu.fields == SUBMIT_FIELDS
    assert P.tlv_int(pdu, P.TAG_SAR_MSG_REF_NUM) == 0xBEEF
    assert pdu.tlvs[P.TAG_MESSAGE_PAYLOAD] == b"x" * 300


def test_bind_and_responses_round_trip() -> None:
    bind = {
        "system_id": "gw",
        "password": "pw",
        "system_type": "VMA",
        "interface_version": 0x34,
        "addr_ton": 0,
        "addr_npi": 0,
        "address_range": "",
    }
    assert P.decode(P.encode(P.BIND_TRANSCEIVER, 1, bind)).fields == bind
    resp = P.decode(P.encode(P.SUBMIT_SM_RESP, 9, {"message_id": "1A2B"}))
    assert resp.fields == {"message_id": "1A2B"} and resp.name == "submit_sm_resp"
    for cid in (P.ENQUIRE_LINK, P.ENQUIRE_LINK_RESP, P.UNBIND, P.UNBIND_RESP, P.GENERIC_NACK):
        frame = P.encode(cid, 3, status=P.ESME_RINVCMDID if cid == P.GENERIC_NACK else 0)
        assert len(frame) == 16
        assert P.decode(frame).command_id == cid


def test_error_response_without_body() -> None:
    # SMPP 3.4 §4.4.2: submit_sm_resp with an error status may omit message_id.
    frame = P.header(P.SUBMIT_SM_RESP, P.ESME_RTHROTTLED, 4, 0)
    pdu = P.decode(frame)
    assert pdu.status == P.ESME_RTHROTTLED and pdu.fields == {}
    assert P.status_name(pdu.status) == "ESME_RTHROTTLED"
    assert P.status_name(0x4321) == "0x00004321"


def test_field_too_long_is_refused_on_encode() -> None:
    with pytest.raises(ValueError, match="system_id"):
        P.encode(P.BIND_TRANSCEIVER, 1, {"system_id": "x" * 16})
    with pytest.raises(ValueError, match="short_message"):
        P.encode(P.SUBMIT_SM, 1, {"short_message": b"x" * 255})


def test_unknown_command() -> None:
    frame = P.header(0x00000777, 0, 5, 0)
    with pytest.raises(P.PduError) as e:
        P.decode(frame)
    assert e.value.status == P.ESME_RINVCMDID and e.value.seq == 5


def test_missing_nul() -> None:
    body = b"x" * 20  # service_type has no NUL within its 6 octets
    with pytest.raises(P.PduError) as e:
        P.decode(P.header(P.SUBMIT_SM, 0, 8, len(body)) + body)
    assert e.value.status == P.ESME_RINVPARLEN and e.value.seq == 8


def test_short_message_past_the_end() -> None:
    frame = P.encode(P.SUBMIT_SM, 2, {**SUBMIT_FIELDS, "short_message": b"abc"})
    broken = frame[:-1]
    broken = struct.pack(">I", len(broken)) + broken[4:]
    with pytest.raises(P.PduError) as e:
        P.decode(broken)
    assert e.value.status == P.ESME_RINVMSGLEN


def test_truncated_tlv_and_length_mismatch() -> None:
    frame = P.encode(P.DELIVER_SM, 2, SUBMIT_FIELDS, tlvs=b"\x04\x24\x00")
    with pytest.raises(P.PduError) as e:
        P.decode(frame)
    assert e.value.status == P.ESME_RINVOPTPARSTREAM
    frame = P.encode(P.DELIVER_SM, 2, SUBMIT_FIELDS, tlvs=P.tlv(0x0424, b"abc"))[:-1]
    with pytest.raises(P.PduError) as e:
        P.decode(frame)
    assert e.value.status == P.ESME_RINVCMDLEN


def test_framer_splits_and_joins() -> None:
    a = P.encode(P.ENQUIRE_LINK, 1)
    b = P.encode(P.SUBMIT_SM_RESP, 2, {"message_id": "abc"})
    stream = a + b + a
    framer = P.Framer()
    frames: list[bytes] = []
    for i in range(0, len(stream), 5):
        frames += framer.feed(stream[i : i + 5])
    assert frames == [a, b, a]


@pytest.mark.parametrize("length", [0, 15, P.MAX_PDU + 1, 0xFFFFFFFF])
def test_framer_refuses_absurd_lengths(length: int) -> None:
    framer = P.Framer()
    with pytest.raises(P.PduError) as e:
        framer.feed(struct.pack(">IIII", length, P.SUBMIT_SM, 0, 42))
    assert e.value.status == P.ESME_RINVCMDLEN and e.value.seq == 42


@given(st.binary(max_size=400))
def test_decode_never_raises_anything_but_pdu_error(data: bytes) -> None:
    frame = struct.pack(">I", 16 + len(data)) + struct.pack(">III", P.DELIVER_SM, 0, 1) + data
    with contextlib.suppress(P.PduError):
        P.decode(frame)
