"""deliver_sm handling without a session: receipts for ids no longer remembered."""

from __future__ import annotations

import pytest

from connectors.base import ConnectorContext
from connectors.smpp import pdu as P
from connectors.smpp.inbound import InboundProcessor
from connectors.smpp.options import parse_options
from connectors.smpp.tracking import SubmittedIds
from tests.connectors.smpp.conftest import RecordingSink

pytestmark = pytest.mark.anyio

OPTS = parse_options("sms1", {"host": "127.0.0.1", "system_id": "gw"})


def receipt(text: str, esm: int = 0x04, tlvs: bytes = b"") -> P.Pdu:
    fields = {"esm_class": esm, "short_message": text.encode()}
    return P.decode(P.encode(P.DELIVER_SM, 1, fields, tlvs=tlvs))


async def test_forgotten_id_translated_as_the_smsc_spells_them(
    context: ConnectorContext, sink: RecordingSink
) -> None:
    ids = SubmittedIds()
    ids.add("1A2B3C4D")
    ids.release(["1A2B3C4D"])
    proc = InboundProcessor("sms1", context, OPTS, ids)
    text = "id:{} sub:001 dlvrd:001 stat:DELIVRD err:000"
    assert await proc.handle(receipt(text.format("0439041101"))) == P.ESME_ROK
    # 1A2B3C4E was sent before a restart: not remembered, spelled like the match above.
    assert await proc.handle(receipt(text.format("0439041102"))) == P.ESME_ROK
    assert sink.lookups == ["1A2B3C4D", "1A2B3C4E"]  # one report each


async def test_unknown_id_reported_once_as_written(
    context: ConnectorContext, sink: RecordingSink
) -> None:
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    await proc.handle(receipt("id:0439041101 stat:DELIVRD"))
    assert sink.lookups == ["0439041101"]  # the gateway parks and retries it


async def test_unknown_receipt_and_unreadable_receipt_are_acknowledged(
    context: ConnectorContext, sink: RecordingSink
) -> None:
    sink.known = lambda cid: False
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    assert await proc.handle(receipt("id:77 stat:DELIVRD")) == P.ESME_ROK
    assert await proc.handle(receipt("garbage")) == P.ESME_ROK
    assert sink.reports == []


async def test_enroute_moves_nothing(context: ConnectorContext, sink: RecordingSink) -> None:
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    await proc.handle(receipt("id:77 stat:ENROUTE", esm=0x20))
    assert sink.lookups == []


async def test_tlv_receipt_without_receipt_esm_class(
    context: ConnectorContext, sink: RecordingSink
) -> None:
    tlvs = P.tlv(P.TAG_RECEIPTED_MESSAGE_ID, b"abc\x00") + P.tlv_u8(P.TAG_MESSAGE_STATE, 8)
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    await proc.handle(receipt("", esm=0, tlvs=tlvs))
    [report] = sink.reports
    assert report.carrier_id == "abc" and report.status == "failed"
    assert report.error is not None and report.error["code"] == "rejected"
    assert sink.inbound_messages == []


async def test_broken_udh_is_acknowledged_and_dropped(
    context: ConnectorContext, sink: RecordingSink
) -> None:
    proc = InboundProcessor("sms1", context, OPTS, SubmittedIds())
    pdu = P.decode(P.encode(P.DELIVER_SM, 1, {"esm_class": 0x40, "short_message": b"\x09\x00"}))
    assert await proc.handle(pdu) == P.ESME_ROK
    assert sink.inbound_messages == []
