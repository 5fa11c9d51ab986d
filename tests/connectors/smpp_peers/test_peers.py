"""The independent SMSCs on their own, driven by a hand-written raw-socket ESME: binds,
message ids, receipts in the standard text form, exact records of submit_sm, injected
inbound messages, throttling, a crash mid-run and a restart that still owes receipts."""

from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path

import pytest

from tests.connectors.smpp_peers import gsm
from tests.connectors.smpp_peers.peers import SmscPeer
from tests.connectors.smpp_peers.raw_esme import BIND_TRANSMITTER, RawEsme

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RECEIPT = re.compile(
    r"^id:(?P<id>\w+) sub:001 dlvrd:001 submit date:\d{10} done date:\d{10} "
    r"stat:DELIVRD err:000 text:(?P<text>.{0,20})$"
)
CONTACT = "4917612345678"
MEMBER = "4915112345671"


async def bound(peer: SmscPeer) -> RawEsme:
    """A raw ESME bound as transceiver with the peer's credentials."""
    esme = await RawEsme.connect(peer.port)
    resp = await esme.bind(peer.system_id, peer.password)
    assert resp.status == 0, f"bind refused: 0x{resp.status:02x}"
    return esme


def message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp body."""
    return body.rstrip(b"\0").decode()


async def test_submit_gets_an_id_and_a_receipt_in_the_standard_text_form(smsc: SmscPeer) -> None:
    esme = await bound(smsc)
    try:
        resp = await esme.submit(CONTACT, gsm.encode("Grüße aus Köln"), source=MEMBER)
        assert resp.status == 0
        mid = message_id(resp.body)
        assert re.fullmatch(r"[0-9a-f]{8}", mid)
        [receipt] = await esme.wait_delivered(1)
        assert receipt.esm_class == 0x04
        assert (receipt.source_addr, receipt.destination_addr) == (CONTACT, MEMBER)
        match = RECEIPT.match(receipt.short_message.decode("ascii"))
        assert match is not None, receipt.short_message
        assert match["id"] == mid
        assert match["text"] == "Gr..e aus K.ln"  # the body's octets, non-ASCII as dots
        await smsc.wait_for(lambda _: bool(smsc.events("receipt", message_id=mid, status=0)),
                            "the receipt's deliver_sm_resp")  # fmt: skip
    finally:
        await esme.close()
    [sub] = await smsc.wait_accepted(1)
    assert sub["message_id"] == mid
    assert (sub["source_addr_ton"], sub["source_addr_npi"], sub["source_addr"]) == (1, 1, MEMBER)
    assert (sub["dest_addr_ton"], sub["dest_addr_npi"], sub["destination_addr"]) == (1, 1, CONTACT)
    assert (sub["esm_class"], sub["data_coding"], sub["registered_delivery"]) == (0, 0, 1)
    assert sub["udh"] is None
    assert sub["short_message"] == gsm.encode("Grüße aus Köln").hex()
    assert sub["text"] == "Grüße aus Köln"


async def test_udh_parts_are_recorded_byte_for_byte(smsc: SmscPeer) -> None:
    text = "Preis: 5€ " * 3
    parts = gsm.concat_parts([gsm.encode(text[:15]), gsm.encode(text[15:])], ref=0xA7)
    ucs2 = "ж" * 3
    esme = await bound(smsc)
    try:
        for part in parts:
            assert (await esme.submit(CONTACT, part, esm_class=0x40)).status == 0
        resp = await esme.submit(CONTACT, ucs2.encode("utf-16-be"), data_coding=8)
        assert resp.status == 0
    finally:
        await esme.close()
    first, second, third = await smsc.wait_accepted(3)
    assert first["udh"] == "050003a70201" and second["udh"] == "050003a70202"
    assert first["esm_class"] == second["esm_class"] == 0x40
    assert first["text"] + second["text"] == text
    assert bytes.fromhex(first["body"]) == gsm.encode(text[:15])
    assert (third["data_coding"], third["text"], third["udh"]) == (8, ucs2, None)


async def test_sar_and_payload_tlvs_are_recorded(smsc: SmscPeer) -> None:
    sar = struct.pack(">HHH", 0x020C, 2, 0x1234) + struct.pack(">HHB", 0x020E, 1, 2)
    sar += struct.pack(">HHB", 0x020F, 1, 1)
    body = gsm.encode("x" * 300)
    payload = struct.pack(">HH", 0x0424, len(body)) + body
    esme = await bound(smsc)
    try:
        assert (await esme.submit(CONTACT, b"part one", tlvs=sar)).status == 0
        assert (await esme.submit(CONTACT, b"", tlvs=payload)).status == 0
    finally:
        await esme.close()
    with_sar, with_payload = await smsc.wait_accepted(2)
    assert with_sar["tlvs"] == {"0x020c": "1234", "0x020e": "02", "0x020f": "01"}
    assert with_payload["tlvs"] == {"0x0424": body.hex()}
    assert with_payload["text"] == "x" * 300


async def test_injected_concatenated_parts_arrive_exactly_as_composed(smsc: SmscPeer) -> None:
    parts = gsm.concat_parts([gsm.encode("Hallo "), gsm.encode("Welt")], ref=9)
    esme = await bound(smsc)
    try:
        for part in reversed(parts):
            event = await smsc.deliver(
                source_addr=CONTACT, destination_addr=MEMBER, esm_class=0x40, short_message=part
            )
            assert event["status"] == 0
        second, first = await esme.wait_delivered(2)
    finally:
        await esme.close()
    assert (first.short_message, second.short_message) == (parts[0], parts[1])
    assert first.esm_class == 0x40 and first.data_coding == 0
    assert (first.source_addr, first.destination_addr) == (CONTACT, MEMBER)


async def test_throttle_answers_with_the_given_status(smsc: SmscPeer) -> None:
    esme = await bound(smsc)
    try:
        await smsc.control("throttle", count=1, status=0x58)
        assert (await esme.submit(CONTACT, b"one")).status == 0x58
        assert (await esme.submit(CONTACT, b"two")).status == 0
    finally:
        await esme.close()
    await smsc.wait_accepted(1)
    assert [e["status"] for e in smsc.events("submit_sm")] == [0x58, 0]


async def test_receipt_tlvs_and_decimal_ids(smsc: SmscPeer, peer_dir: Path) -> None:
    # The fixture's peer is not used: this one is started with the two options.
    smsc.stop()
    peer = SmscPeer(smsc.kind, peer_dir, options=("--receipt-tlvs", "--receipt-id-decimal"))
    peer.start()
    try:
        esme = await bound(peer)
        try:
            mid = message_id((await esme.submit(CONTACT, b"tlv")).body)
            [receipt] = await esme.wait_delivered(1)
        finally:
            await esme.close()
    finally:
        peer.stop()
    match = RECEIPT.match(receipt.short_message.decode())
    assert match is not None and match["id"] == str(int(mid, 16))
    assert receipt.tlvs[0x001E] == mid.encode() + b"\0"
    assert receipt.tlvs[0x0427] == b"\x02"


async def test_crash_mid_run_then_restart_sends_the_owed_receipts(smsc: SmscPeer) -> None:
    await smsc.control("set", receipt_delay_ms=60_000)  # nothing is receipted before the crash
    await smsc.control("crash_after", submits=3)
    esme = await bound(smsc)
    ids = []
    try:
        for text in (b"first", b"second"):
            ids.append(message_id((await esme.submit(CONTACT, text)).body))
        with pytest.raises(ConnectionError):
            await esme.submit(CONTACT, b"third")  # the SMSC dies on it, unanswered
    finally:
        await esme.close()
    assert smsc.proc is not None and smsc.proc.wait(10) == -9
    await smsc.wait_for(lambda _: bool(smsc.events("crashing")), "the crash")
    assert [e["text"] for e in smsc.accepted()] == ["first", "second"]
    smsc.start()  # same port, same journal; the owed receipts are due at once
    esme = await bound(smsc)
    try:
        receipts = await esme.wait_delivered(2)
        new_id = message_id((await esme.submit(CONTACT, b"fourth")).body)
    finally:
        await esme.close()
    got = sorted(RECEIPT.match(r.short_message.decode())["id"] for r in receipts)  # type: ignore[index]
    assert got == sorted(ids)
    assert new_id not in ids


async def test_node_authenticates_binds(node_smsc: SmscPeer) -> None:
    for system_id, password, status in (("gateway", "wrong", 0x0E), ("nobody", "secret", 0x0F)):
        esme = await RawEsme.connect(node_smsc.port)
        try:
            assert (await esme.bind(system_id, password)).status == status
            await asyncio.wait_for(esme.closed.wait(), 10)  # it hangs up after a refusal
        finally:
            await esme.close()
    esme = await bound(node_smsc)
    try:
        assert (await esme.bind("gateway", "secret")).status == 0x05  # already bound
    finally:
        await esme.close()
    esme = await RawEsme.connect(node_smsc.port)
    try:
        assert (await esme.bind("gateway", "secret", BIND_TRANSMITTER)).status == 0
        assert (await esme.submit(CONTACT, b"tx only")).status == 0
    finally:
        await esme.close()
    await node_smsc.wait_accepted(1)
    assert [e["command"] for e in node_smsc.events("bind")] == [
        "bind_transceiver", "bind_transceiver", "bind_transceiver", "bind_transceiver",
        "bind_transmitter",
    ]  # fmt: skip


async def test_smpp34_cannot_authenticate(smpp34_smsc: SmscPeer) -> None:
    """smpp34 answers binds itself: any password is accepted (a documented limitation)."""
    esme = await RawEsme.connect(smpp34_smsc.port)
    try:
        assert (await esme.bind("anyone", "wrong")).status == 0
    finally:
        await esme.close()
