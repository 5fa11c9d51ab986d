"""Coverage-guided fuzzing (atheris) of what an SMSC sends.

The input is either a raw byte stream or (chosen by its first byte) a deliver_sm or
submit_sm_resp built from the bytes that follow, so that libFuzzer reaches receipts, UDH,
SAR TLVs and every data_coding without a corpus. Streams are framed and decoded; each
deliver_sm is handled as the connector does, each submit_sm_resp id filed as the send path
does. Nothing may raise but :class:`PduError` (answered with a generic_nack)::

    .venv/bin/python tests/fuzz/fuzz_smpp.py -seed=1 -runs=200000   # or -max_total_time=600
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

import atheris

with atheris.instrument_imports(include=["connectors.smpp"]):
    from connectors.base import ConnectorContext
    from connectors.smpp import pdu as P
    from connectors.smpp.inbound import InboundProcessor
    from connectors.smpp.options import parse_options
    from connectors.smpp.tracking import SubmittedIds

from gateway.clock import FrozenClock

LOOP = asyncio.new_event_loop()
TAGS = [0x001E, 0x0427, 0x0423, 0x0424, 0x020C, 0x020E, 0x020F]
STATS = ["DELIVRD", "UNDELIV", "ENROUTE", "EXPIRED", "REJECTD", "ACCEPTD", "UNKNOWN"]


class Sink:
    """Takes everything; checks that what it gets could be stored."""

    async def inbound(self, message: Any) -> None:
        """An inbound message: its strings must be valid Unicode."""
        for value in (message.from_, message.to, message.text or "", message.carrier_id):
            value.encode("utf-8")
        assert message.segments >= 1

    async def status(self, report: Any) -> None:
        """A status report: its carrier id must be valid Unicode."""
        report.carrier_id.encode("utf-8")


CLOCK = FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
CONTEXT = ConnectorContext(None, Sink(), CLOCK, None, "")  # type: ignore[arg-type]
IDS = SubmittedIds()
OPTIONS = [{"host": "h", "system_id": "gw"}, {"host": "h", "system_id": "gw", "gsm7_packing": True}]
PROCESSORS = [InboundProcessor("sms1", CONTEXT, parse_options("sms1", o), IDS) for o in OPTIONS]


def receipt_text(fdp: atheris.FuzzedDataProvider) -> bytes:
    """An Appendix B receipt whose values come from the input."""
    parts = [
        b"id:" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24)),
        b"sub:001 dlvrd:001",
        b"submit date:" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 14)),
        b"done date:" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 14)),
        b"stat:" + fdp.PickValueInList(STATS).encode(),
        b"err:" + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 4)),
    ]
    if fdp.ConsumeBool():
        parts.reverse()
    return b" ".join(parts) + b" text:" + fdp.ConsumeBytes(8)


def deliver_sm(fdp: atheris.FuzzedDataProvider) -> bytes:
    """A deliver_sm from the input: fields, short_message or payload, TLVs."""
    esm = fdp.PickValueInList([0, 0x04, 0x08, 0x20, 0x40, fdp.ConsumeIntInRange(0, 255)])
    short = receipt_text(fdp) if fdp.ConsumeBool() else fdp.ConsumeBytes(120)
    tlvs = b""
    if fdp.ConsumeBool():
        tlvs += P.tlv(0x0424, short)
        short = b""
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        tag = fdp.PickValueInList(TAGS) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 0xFFFF)
        tlvs += P.tlv(tag, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)))
    fields = {
        "source_addr_ton": fdp.ConsumeIntInRange(0, 255),
        "source_addr": fdp.ConsumeBytes(20).replace(b"\0", b""),
        "dest_addr_ton": fdp.ConsumeIntInRange(0, 255),
        "destination_addr": fdp.ConsumeBytes(20).replace(b"\0", b""),
        "esm_class": esm,
        "data_coding": fdp.ConsumeIntInRange(0, 255),
        "short_message": short[:254],
    }
    return P.encode(P.DELIVER_SM, 1, fields, tlvs=tlvs)


def one_input(data: bytes) -> None:
    """Frame, decode and handle ``data`` as if an SMSC sent it."""
    fdp = atheris.FuzzedDataProvider(data)
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        stream = fdp.ConsumeBytes(len(data))
    elif kind == 1:
        stream = deliver_sm(fdp)
    elif kind == 2:
        message_id = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)).replace(b"\0", b"")
        stream = P.encode(P.SUBMIT_SM_RESP, 1, {"message_id": message_id})
    else:
        stream = P.encode(P.DELIVER_SM, 1, {"esm_class": 4, "short_message": receipt_text(fdp)})
    try:
        frames = P.Framer().feed(stream)
    except P.PduError:
        return
    for frame in frames:
        try:
            pdu = P.decode(frame)
        except P.PduError:
            continue
        if pdu.command_id == P.SUBMIT_SM_RESP:
            cid = str(pdu.fields.get("message_id") or "")
            IDS.add(cid)
            IDS.release([cid])
        elif pdu.command_id == P.DELIVER_SM:
            for proc in PROCESSORS:
                assert LOOP.run_until_complete(proc.handle(pdu)) == P.ESME_ROK
                proc.reassembler.expired(float("inf"))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
