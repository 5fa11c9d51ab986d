"""What an SMSC delivers, under fuzz: any deliver_sm (receipt or message, UDH or SAR or
message_payload, any data_coding, any receipt text and TLVs) is answered ``ESME_ROK``
and never raises, so no PDU becomes a poison message that the SMSC redelivers forever;
any submit_sm_resp id is filed without raising. Once through a recording sink (many
examples), once into a real gateway (SQLite store) behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import ConnectorContext, InboundMessage
from connectors.smpp import pdu as P
from connectors.smpp import receipt
from connectors.smpp.content import read_deliver
from connectors.smpp.inbound import InboundProcessor
from connectors.smpp.options import parse_options
from connectors.smpp.reassembly import InboundIds, Reassembler
from connectors.smpp.tracking import IdStyle, SubmittedIds, index_forms
from connectors.smpp.udh import concat_8, concat_16
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.inbound import Inbound
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.connectors.smpp.conftest import RecordingSink
from tests.fuzzing import fuzz, read_back
from tests.gateway.conftest import CONTACT, MOBILE_A, seed_directory

pytestmark = pytest.mark.anyio

OPTS = parse_options("sms1", {"host": "127.0.0.1", "system_id": "gw"})
PACKED = parse_options("sms1", {"host": "127.0.0.1", "system_id": "gw", "gsm7_packing": True})
LATIN1 = st.characters(max_codepoint=0xFF)
CLOCK = FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC))

# -- message ids as SMSCs spell them, and as they should not ---------------------------
ids = st.one_of(
    st.text("0123456789", min_size=1, max_size=20),
    st.text("0123456789abcdefABCDEF", min_size=1, max_size=20),
    st.text("0123456789abcdef²³¹ \t-_x", max_size=12),  # "²".isdigit() holds
    st.text(LATIN1, max_size=30),
    st.integers(4290, 4400).map(lambda n: "7" * n),  # past int()'s 4300 digits
    st.integers(3500, 3700).map(lambda n: "f" * n),  # hex whose decimal has > 4300 digits
)
words = st.sampled_from(sorted(receipt.STAT_MAP)) | st.text(LATIN1, max_size=10)
dates = st.text("0123456789", max_size=14) | st.text(LATIN1, max_size=14)


@st.composite
def receipt_texts(draw: st.DrawFn) -> str:
    """Appendix B receipt texts, with fields dropped, reordered, re-cased or garbled."""
    fields = [
        ("id", draw(ids)),
        ("sub", draw(st.text("0123456789", max_size=4))),
        ("dlvrd", draw(st.text("0123456789", max_size=4))),
        ("submit date", draw(dates)),
        ("done date", draw(dates)),
        ("stat", draw(words)),
        ("err", draw(st.text("0123456789abcdefABCDEF", max_size=4) | st.text(LATIN1, max_size=4))),
    ]
    fields = draw(st.permutations(fields)) if draw(st.booleans()) else fields
    kept = [f for f in fields if draw(st.integers(0, 9))]
    sep = draw(st.sampled_from([":", ": ", " : "]))
    text = " ".join(f"{draw(st.sampled_from([k, k.upper()]))}{sep}{v}" for k, v in kept)
    if draw(st.booleans()):
        text += " text:" + draw(st.text(LATIN1, max_size=20))
    return text


def tlv_value(tag: int) -> st.SearchStrategy[bytes]:
    """Values of a TLV: the right width or any."""
    width = {
        P.TAG_MESSAGE_STATE: 1,
        P.TAG_SAR_MSG_REF_NUM: 2,
        P.TAG_SAR_TOTAL_SEGMENTS: 1,
        P.TAG_SAR_SEGMENT_SEQNUM: 1,
        P.TAG_NETWORK_ERROR_CODE: 3,
    }.get(tag)
    honest = st.binary(min_size=width, max_size=width) if width else st.nothing()
    return honest | st.binary(max_size=9)


@st.composite
def deliver_sms(draw: st.DrawFn, to_member: bool = False) -> bytes:
    """A deliver_sm an SMSC could send (or a broken one), as it comes off the wire;
    ``to_member``: mostly to a member's number, so that the gateway stores it."""
    esm = draw(st.sampled_from([0, 0x04, 0x08, 0x10, 0x20, 0x40, 0x44]) | st.integers(0, 255))
    dc = draw(st.sampled_from([0, 1, 3, 4, 8, 0x11, 0x18, 0xC0, 0xF0, 0xF4]) | st.integers(0, 255))
    kind = draw(st.sampled_from(["receipt", "udh", "text", "binary"]))
    if kind == "receipt":
        text = draw(receipt_texts())
        data = text.encode("utf-16-be", "surrogatepass") if dc == 8 else text.encode("latin-1")
    elif kind == "udh":
        header = draw(
            st.builds(concat_8, st.integers(0, 3), st.integers(0, 4), st.integers(0, 5))
            | st.builds(concat_16, st.integers(0, 3), st.integers(0, 4), st.integers(0, 5))
            | st.binary(max_size=12)
        )
        data = header + draw(st.binary(max_size=60))
    elif kind == "text":
        data = draw(st.text(max_size=80)).encode("utf-16-be", "surrogatepass")
    else:
        data = draw(st.binary(max_size=254))
    in_payload = len(data) > 254 or draw(st.integers(0, 5)) == 0
    tlvs = b""
    if in_payload:
        tlvs += P.tlv(P.TAG_MESSAGE_PAYLOAD, data)
    tags = [
        P.TAG_RECEIPTED_MESSAGE_ID,
        P.TAG_MESSAGE_STATE,
        P.TAG_NETWORK_ERROR_CODE,
        P.TAG_SAR_MSG_REF_NUM,
        P.TAG_SAR_TOTAL_SEGMENTS,
        P.TAG_SAR_SEGMENT_SEQNUM,
    ]
    for tag in draw(st.lists(st.sampled_from(tags), unique=True, max_size=4)):
        if tag == P.TAG_RECEIPTED_MESSAGE_ID:
            value = draw(ids).encode("latin-1", "replace")[:200]
            value += draw(st.sampled_from([b"", b"\0"]))
        else:
            value = draw(tlv_value(tag))
        tlvs += P.tlv(tag, value)
    address = st.sampled_from(
        [MOBILE_A, MOBILE_A[1:], "00" + MOBILE_A[1:], CONTACT[1:], "015112345671", "²³", ""]
    ) | st.text(LATIN1.filter(lambda c: c != "\0"), max_size=20)
    member = st.sampled_from([MOBILE_A[1:], "00" + MOBILE_A[1:]])
    fields = {
        "source_addr_ton": draw(st.integers(0, 6) | st.integers(0, 255)),
        "source_addr": draw(address).encode("latin-1"),
        "dest_addr_ton": draw(st.sampled_from([0, 1]) if to_member else st.integers(0, 255)),
        "destination_addr": draw(member if to_member else address).encode("latin-1"),
        "esm_class": esm,
        "data_coding": dc,
        "short_message": b"" if in_payload else data,
    }
    return P.encode(P.DELIVER_SM, draw(st.integers(1, 2**31)), fields, tlvs=tlvs)


def check_message(m: InboundMessage) -> None:
    """What reaches the gateway can be stored: strings without lone surrogates."""
    for value in (m.from_, m.to, m.text or "", m.carrier_id):
        value.encode("utf-8")
    assert m.segments >= 1


@fuzz(200)
@given(st.lists(deliver_sms(), min_size=1, max_size=6), st.lists(ids, max_size=3))
async def test_any_deliver_sm_is_acknowledged(frames: list[bytes], submitted: list[str]) -> None:
    sink = RecordingSink()
    context = ConnectorContext(None, sink, CLOCK, None, "")  # type: ignore[arg-type]
    known = SubmittedIds()
    for cid in submitted:
        known.add(cid)  # ids from submit_sm_resp: the SMSC's too
    known.release(submitted)
    for opts in (OPTS, PACKED):
        proc = InboundProcessor("sms1", context, opts, known)
        for frame in frames:
            assert await proc.handle(P.decode(frame)) == P.ESME_ROK
        for whole in proc.reassembler.expired(float("inf")):
            assert whole.missing and whole.text
    for m in sink.inbound_messages:
        check_message(m)


@fuzz(300)
@given(ids, ids, ids)
def test_ids_are_filed_and_translated_in_any_spelling(a: str, b: str, c: str) -> None:
    assert index_forms(a)[0] == a.strip().lower()
    assert receipt.id_forms(a)[0] == a.strip().lower()
    style = IdStyle()
    style.learn(a, b)
    assert isinstance(style.translate(c), str)


@fuzz(200)
@given(deliver_sms())
def test_read_deliver_raises_only_value_error(frame: bytes) -> None:
    pdu = P.decode(frame)
    for packed in (False, True):
        try:
            got = read_deliver(pdu, packed)
        except ValueError:
            continue
        got.text.encode("utf-8")
        if got.concat is not None:
            assert 1 <= got.concat.seq <= got.concat.total


@fuzz(100)
@given(st.lists(deliver_sms(), min_size=1, max_size=8), st.floats(0, 1e6))
def test_reassembly_takes_any_parts(frames: list[bytes], now: float) -> None:
    r = Reassembler(10.0, 20.0)
    mo = InboundIds(5.0)
    for frame in frames:
        try:
            got = read_deliver(P.decode(frame), False)
        except ValueError:
            continue
        whole = r.add(got, now)
        if whole is not None:
            mo.carrier_id(whole, now, CLOCK.now())
            r.done(whole.key, now)
    for whole in r.expired(now + 10.0):
        assert whole.missing


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A gateway runtime on a SQLite store with the seeded team (Anna owns MOBILE_A)."""
    settings = parse_settings(
        {"gateway": {"store": f"sqlite:///{tmp_path}/gw.db", "blobs": str(tmp_path / "blobs")}}
    )
    runtime = await open_runtime(settings, clock=CLOCK)
    try:
        await runtime.wait_started()
        await seed_directory(runtime, CLOCK)
        yield runtime
    finally:
        await runtime.aclose()


@fuzz(40)
@given(st.lists(deliver_sms(to_member=True), min_size=1, max_size=4))
async def test_any_deliver_sm_into_a_real_gateway(rt: Runtime, frames: list[bytes]) -> None:
    context = ConnectorContext(rt.http, Inbound(rt), rt.clock, rt.blobs, "")
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    for frame in frames:
        assert await proc.handle(P.decode(frame)) == P.ESME_ROK
    await read_back(rt)


def test_receipt_tlv_widths() -> None:
    # A 4-octet message_state and an empty network_error_code: read, not refused.
    tlvs = P.tlv(P.TAG_RECEIPTED_MESSAGE_ID, b"ab\0") + P.tlv(P.TAG_MESSAGE_STATE, b"\0\0\0\2")
    tlvs += P.tlv(P.TAG_NETWORK_ERROR_CODE, b"")
    pdu = P.decode(P.encode(P.DELIVER_SM, 1, {"esm_class": 4}, tlvs=tlvs))
    got = receipt.parse(pdu, "")
    assert got is not None and got.stat == "DELIVRD" and got.network_error is None
