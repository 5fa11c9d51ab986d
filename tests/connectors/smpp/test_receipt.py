"""Delivery receipts: TLVs first, the text form with its variants, id spellings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from connectors.base import ErrorCode
from connectors.smpp import pdu as P
from connectors.smpp.receipt import id_forms, is_receipt, parse, parse_date
from connectors.smpp.tracking import IdStyle, SubmittedIds


def pdu(esm: int = 0x04, tlvs: bytes = b"") -> P.Pdu:
    return P.decode(P.encode(P.DELIVER_SM, 1, {"esm_class": esm}, tlvs=tlvs))


TEXT = (
    "id:0439041101 sub:001 dlvrd:001 submit date:2603151200 done date:260315120130 "
    "stat:DELIVRD err:000 text:Hallo id:bogus"
)


def test_text_form_10_and_12_digit_dates() -> None:
    r = parse(pdu(), TEXT)
    assert r is not None
    assert r.message_id == "0439041101" and r.stat == "DELIVRD" and r.err == "000"
    assert r.submit_date == datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
    assert r.done_date == datetime(2026, 3, 15, 12, 1, 30, tzinfo=UTC)
    assert r.status == "delivered" and r.error() is None


def test_lower_case_and_hex_err() -> None:
    r = parse(
        pdu(),
        "ID:1a2b3c4d SUB:001 DLVRD:000 SUBMIT DATE:2603151200 "
        "DONE DATE:2603151201 STAT:undeliv ERR:0x1F TEXT:",
    )
    assert r is not None and r.stat == "UNDELIV" and r.err == "0x1F"
    error = r.error()
    assert error == {
        "code": ErrorCode.UNREACHABLE,
        "message": "carrier reports UNDELIV",
        "carrier_code": "stat=UNDELIV err=0x1F",
        "retryable": False,
    }


def test_tlvs_win_over_text() -> None:
    tlvs = (
        P.tlv(P.TAG_RECEIPTED_MESSAGE_ID, b"1A2B3C4D\x00")
        + P.tlv_u8(P.TAG_MESSAGE_STATE, 5)
        + P.tlv(P.TAG_NETWORK_ERROR_CODE, b"\x03\x00\x22")
    )
    r = parse(pdu(tlvs=tlvs), TEXT)
    assert r is not None and r.message_id == "1A2B3C4D" and r.stat == "UNDELIV"
    assert r.network_error == 0x030022
    assert r.error() is not None and "network_error=0x030022" in str(r.error())


@pytest.mark.parametrize(
    ("stat", "status", "code"),
    [
        ("DELIVRD", "delivered", None),
        ("EXPIRED", "failed", ErrorCode.EXPIRED),
        ("UNDELIV", "failed", ErrorCode.UNREACHABLE),
        ("REJECTD", "failed", ErrorCode.REJECTED),
        ("DELETED", "failed", ErrorCode.CARRIER_ERROR),
        ("UNKNOWN", "failed", ErrorCode.UNKNOWN),
        ("ACCEPTD", None, None),
        ("ENROUTE", None, None),
        ("WEIRD", "failed", ErrorCode.UNKNOWN),
    ],
)
def test_stat_mapping(stat: str, status: str | None, code: str | None) -> None:
    r = parse(pdu(), f"id:1 stat:{stat} err:0")
    assert r is not None and r.status == status
    error = r.error()
    assert (error["code"] if error else None) == code


def test_which_deliver_sm_is_a_receipt() -> None:
    assert is_receipt(pdu(0x04)) and is_receipt(pdu(0x08)) and is_receipt(pdu(0x20))
    assert is_receipt(pdu(0x44))  # receipt type with UDHI
    assert not is_receipt(pdu(0x00)) and not is_receipt(pdu(0x40))
    tlvs = P.tlv(P.TAG_RECEIPTED_MESSAGE_ID, b"7\x00") + P.tlv_u8(P.TAG_MESSAGE_STATE, 2)
    assert is_receipt(pdu(0x00, tlvs))


def test_unreadable() -> None:
    assert parse(pdu(), "hello there") is None
    assert parse(pdu(), "id:123 sub:001") is None
    assert parse_date("26031512") is None and parse_date("2613151200") is None


def test_id_forms() -> None:
    assert id_forms("0439041101") == ["0439041101", "439041101", "1a2b3c4d", str(0x439041101)]
    assert id_forms("1A2B3C4D") == ["1a2b3c4d", "439041101"]
    assert id_forms("msg-7") == ["msg-7"]


@pytest.mark.anyio
async def test_submitted_ids_match_any_spelling() -> None:
    ids = SubmittedIds()
    for cid in ("1A2B3C4D", "0000FF", "16"):
        ids.add(cid)
    assert ids.lookup("0439041101") == "1A2B3C4D"  # decimal in the receipt, hex submitted
    assert ids.lookup("1a2b3c4d") == "1A2B3C4D"
    assert ids.lookup("255") == "0000FF"
    assert ids.lookup("ff") == "0000FF"
    assert ids.lookup("16") == "16"  # the exact spelling wins over hex 0x16
    assert ids.lookup("nope") is None


@pytest.mark.anyio
async def test_receipts_wait_for_send_to_return() -> None:
    ids = SubmittedIds()
    ids.add("A1")
    waiter = asyncio.create_task(ids.released("A1", timeout=10))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    ids.release(["A1"])
    await waiter
    await ids.released("unknown", timeout=10)  # nothing to wait for


@pytest.mark.anyio
async def test_submitted_ids_are_bounded() -> None:
    ids = SubmittedIds(capacity=4)
    for n in range(10):
        ids.add(f"id{n}")
    assert ids.lookup("id9") == "id9" and ids.lookup("id0") is None


@pytest.mark.parametrize(
    ("receipt_id", "carrier_id", "later", "expected"),
    [
        ("0439041101", "1A2B3C4D", "0439041102", "1A2B3C4E"),  # decimal receipt, hex submit
        ("1a2b3c4d", "439041101", "1a2b3c4e", "439041102"),  # hex receipt, decimal submit
        ("255", "000000FF", "256", "00000100"),  # padded upper-case hex
        ("abc", "ABC", "abd", "ABD"),  # only the case differs
        ("000123", "123", "000124", "124"),  # padding in the receipt only
        ("msg-1", "msg-1", "msg-2", "msg-2"),
    ],
)
def test_id_style_learned_from_a_match(
    receipt_id: str, carrier_id: str, later: str, expected: str
) -> None:
    style = IdStyle()
    assert style.translate(later) == later  # nothing learned: as the SMSC wrote it
    style.learn(receipt_id, carrier_id)
    assert style.translate(receipt_id) == carrier_id
    assert style.translate(later) == expected


def test_id_style_leaves_what_it_cannot_read() -> None:
    style = IdStyle()
    style.learn("0439041101", "1A2B3C4D")
    assert style.translate("not-a-number") == "not-a-number"
