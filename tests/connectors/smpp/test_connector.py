"""The smpp connector against the SMSC simulator: send, receipts, inbound, faults."""

from __future__ import annotations

import asyncio

import pytest

from connectors.base import (
    AuthError,
    ConnectorContext,
    ErrorCode,
    NotReadyError,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
)
from connectors.smpp import gsm7
from connectors.smpp import pdu as P
from connectors.smpp.connector import SmppConnector
from connectors.smpp.simulator import SmscSimulator
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from tests.conftest import free_port
from tests.connectors.smpp.conftest import CONTACT, SENDER, Make, RecordingSink, eventually

pytestmark = pytest.mark.anyio


def out(text: str, mid: str = "msg_1", to: str = CONTACT, sender: str = SENDER) -> OutboundMessage:
    return OutboundMessage(mid, "sms", sender, to, text)


async def started(make: Make, **options: object) -> SmppConnector:
    c = make(**options)
    await c.start()
    return c


async def test_send_then_receipt_delivered(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    c = await started(make)
    assert c.health().ok and c.health().detail == "1/1 binds up"
    result = await c.send(out("Hallo"))
    [sub] = sim.submits
    assert result == SendResult(sub.message_id, 1, {"data_coding": 0, "submits": 1}, [])
    f = sub.pdu.fields
    assert (f["source_addr_ton"], f["source_addr"], f["destination_addr"]) == (
        1,
        "4915112345671",
        "4917612345678",
    )
    assert f["registered_delivery"] == 1 and sub.text == "Hallo"
    await eventually(lambda: bool(sink.reports))
    [report] = sink.reports
    assert (report.connector_id, report.carrier_id, report.status) == (
        "sms1",
        result.carrier_id,
        "delivered",
    )
    assert report.error is None
    await eventually(lambda: sim.deliver_results == [("receipt", P.ESME_ROK)])


async def test_text_receipt_with_decimal_id_matches_hex_submit_id(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    sim.receipt_tlvs = False  # the receipt's text says id:0439… (decimal)
    c = await started(make)
    result = await c.send(out("Hallo"))
    assert not result.carrier_id.isdigit()
    await eventually(lambda: bool(sink.reports))
    assert [r.carrier_id for r in sink.reports] == [result.carrier_id]
    assert sink.lookups == [result.carrier_id]  # matched in memory: one store lookup


async def test_failed_receipt(make: Make, sim: SmscSimulator, sink: RecordingSink) -> None:
    sim.stat_for[CONTACT] = "UNDELIV"
    c = await started(make)
    await c.send(out("Hallo"))
    await eventually(lambda: bool(sink.reports))
    report = sink.reports[0]
    assert report.status == "failed"
    assert report.error is not None and report.error["code"] == ErrorCode.UNREACHABLE


async def test_three_parts_by_udh(make: Make, sim: SmscSimulator, sink: RecordingSink) -> None:
    c = await started(make)
    text = "".join(str(i % 10) for i in range(307))
    result = await c.send(out(text))
    assert len(sim.submits) == 3 and result.segments == 3
    assert result.part_ids == [s.message_id for s in sim.submits]
    assert result.carrier_id == result.part_ids[0]
    refs = set()
    for i, s in enumerate(sim.submits, 1):
        sm = s.pdu.fields["short_message"]
        assert s.pdu.fields["esm_class"] == 0x40
        assert sm[:3] == b"\x05\x00\x03" and sm[4:6] == bytes([3, i])
        refs.add(sm[3])
    assert len(refs) == 1
    assert "".join(gsm7.decode(s.pdu.fields["short_message"][6:]) for s in sim.submits) == text
    await eventually(lambda: len(sink.reports) == 3)
    assert sorted(r.carrier_id for r in sink.reports) == sorted(result.part_ids)


async def test_sar_and_payload(make: Make, sim: SmscSimulator) -> None:
    sar = await started(make, long_messages="sar")
    await sar.send(out("x" * 200))
    assert [P.tlv_int(s.pdu, P.TAG_SAR_SEGMENT_SEQNUM) for s in sim.submits] == [1, 2]
    await sar.aclose()
    payload = await started(make, long_messages="payload")
    result = await payload.send(out("y" * 400, "msg_2"))
    assert len(sim.submits) == 3 and result.segments == 3 and result.part_ids == []
    assert sim.submits[2].pdu.tlvs[P.TAG_MESSAGE_PAYLOAD] == b"y" * 400
    assert result.meta["submits"] == 1


async def test_receipts_wait_until_send_returned(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    sim.receipt_delay = 0.0  # receipts overtake the later parts' submit_sm_resp
    c = await started(make)
    result = await c.send(out("z" * 459))  # three parts
    assert sink.reports == []  # none reached the gateway before it knew the ids
    await eventually(lambda: len(sink.reports) == 3)
    assert {r.carrier_id for r in sink.reports} == set(result.part_ids)


async def test_inbound_concatenated_out_of_order(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    await started(make)
    text = "Grüße aus Köln! " * 20  # 320 septets: three parts
    assert sim.inject(CONTACT, SENDER, text, order=[3, 1, 2]) == 3
    await eventually(lambda: len(sim.deliver_results) == 3)
    await eventually(lambda: bool(sink.inbound_messages))
    [msg] = sink.inbound_messages
    assert (msg.from_, msg.to, msg.text, msg.segments) == (CONTACT, SENDER, text, 3)
    assert msg.channel == "sms" and msg.connector_id == "sms1" and msg.carrier_id
    assert sim.deliver_results == [("mo", 0)] * 3


async def test_inbound_sar_ucs2(make: Make, sim: SmscSimulator, sink: RecordingSink) -> None:
    await started(make)
    text = "Привет 😀 " * 10
    sim.inject(CONTACT, SENDER, text, concat="sar", order=[2, 1])
    await eventually(lambda: bool(sink.inbound_messages))
    assert sink.inbound_messages[0].text == text


async def test_inbound_redelivery_keeps_its_id(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    await started(make)
    sim.inject(CONTACT, SENDER, "Ja, passt.")
    sim.inject(CONTACT, SENDER, "Ja, passt.")  # the SMSC sends it again
    await eventually(lambda: len(sink.inbound_messages) == 2)
    first, second = sink.inbound_messages
    assert first.carrier_id == second.carrier_id  # the gateway keeps one


async def test_sink_failure_asks_for_redelivery(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    sink.fail_inbound = 1
    await started(make)
    sim.inject(CONTACT, SENDER, "x" * 200, order=[2, 1])  # the last part's store fails
    await eventually(lambda: bool(sink.inbound_messages))
    assert sink.inbound_messages[0].text == "x" * 200
    await eventually(lambda: len(sim.deliver_results) == 3)
    assert [s for _, s in sim.deliver_results] == [0, P.ESME_RX_T_APPN, 0]


async def test_incomplete_inbound_is_delivered_after_the_timeout(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    await started(make, reassembly_timeout=0.1)
    sim.inject(CONTACT, SENDER, "a" * 153 + "b" * 153 + "c", order=[1, 3])
    await eventually(lambda: bool(sink.inbound_messages))
    [msg] = sink.inbound_messages
    assert msg.text == "a" * 153 + "[…]c" and msg.segments == 3
    assert msg.meta == {"incomplete": True, "missing_parts": [2]}


async def test_throttle_pauses_and_retries(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    sim.throttle(2)
    result = await c.send(out("Hallo"))
    assert [s.status for s in sim.submits] == [P.ESME_RTHROTTLED, P.ESME_RTHROTTLED, 0]
    assert result.carrier_id == sim.submits[-1].message_id


async def test_throttle_beyond_the_retries(make: Make, sim: SmscSimulator) -> None:
    c = await started(make, throttle_retries=2, throttle_pause=0.01)
    sim.throttle(5)
    with pytest.raises(RetryableError) as e:
        await c.send(out("Hallo"))
    assert e.value.code == ErrorCode.THROTTLED and e.value.retry_after == 0.01
    assert e.value.carrier_code == "ESME_RTHROTTLED" and len(sim.submits) == 3


async def test_queue_full_is_throttling_too(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    sim.reject(P.ESME_RMSGQFUL)
    await c.send(out("Hallo"))
    assert [s.status for s in sim.submits] == [P.ESME_RMSGQFUL, 0]


async def test_permanent_rejection(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    sim.reject(P.ESME_RINVDSTADR)
    with pytest.raises(PermanentError) as e:
        await c.send(out("Hallo"))
    assert e.value.code == ErrorCode.INVALID_NUMBER and e.value.carrier_code == "ESME_RINVDSTADR"


async def test_failed_part_is_resumed_not_resent(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    text = "q" * 300
    sim.reject(P.ESME_RSYSERR)
    with pytest.raises(RetryableError):
        await c.send(out(text))
    assert [s.status for s in sim.submits] == [P.ESME_RSYSERR]
    result = await c.send(out(text))
    assert [s.status for s in sim.submits] == [P.ESME_RSYSERR, 0, 0]
    assert result.part_ids == [s.message_id for s in sim.submits[1:]]


async def test_second_part_failure_resumes_after_the_first(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    text = "r" * 300
    sim.reject(P.ESME_RSYSERR, after=1)  # the second part is refused
    with pytest.raises(RetryableError):
        await c.send(out(text))
    assert [s.status for s in sim.submits] == [0, P.ESME_RSYSERR]
    result = await c.send(out(text))  # the job's retry
    assert [s.status for s in sim.submits] == [0, P.ESME_RSYSERR, 0]
    assert result.part_ids == [sim.submits[0].message_id, sim.submits[2].message_id]


async def test_response_timeout_is_retryable(make: Make, sim: SmscSimulator) -> None:
    c = await started(make, response_timeout=1)
    sim.mute(1)
    with pytest.raises(RetryableError) as e:
        await c.send(out("Hallo"))
    assert e.value.code == ErrorCode.TIMEOUT and "may arrive twice" in e.value.message


async def test_connection_dropped_after_submit_is_retryable(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    c = await started(make)
    sim.drop_on_submit(accept=True)
    with pytest.raises(RetryableError) as e:
        await c.send(out("Hallo"))
    assert e.value.code == ErrorCode.TIMEOUT and "may arrive twice" in e.value.message
    # The documented choice: sent again rather than lost.
    await eventually(lambda: c.health().ok)
    await c.send(out("Hallo"))
    assert sim.accepted == 2


async def test_smsc_restart_loses_nothing_and_sends_nothing_twice(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    sim.receipt_delay = 0.1
    c = await started(make)
    texts = [f"message {i}" for i in range(10)]
    results: dict[str, SendResult] = {}

    async def send_like_the_job(i: int) -> None:
        while True:  # the durable job retries a RetryableError
            try:
                results[texts[i]] = await c.send(out(texts[i], f"msg_{i}"))
                return
            except RetryableError:
                await asyncio.sleep(0.05)

    for i in range(5):
        await send_like_the_job(i)
    await sim.stop()
    await eventually(lambda: not c.health().ok)
    down = c.health()
    assert "no bind up" in down.detail
    # Reconnecting, not refused: sends are worth retrying at the next bind attempt.
    assert down.retry_after is not None and down.retry_after <= 30
    with pytest.raises(RetryableError):
        await c.send(out("while down", "msg_x"))

    async def restart() -> None:
        await asyncio.sleep(0.3)
        await sim.start()

    restarting = asyncio.create_task(restart())
    for i in range(5, 10):
        await send_like_the_job(i)
    await restarting
    accepted = [s.text for s in sim.submits if s.status == 0]
    assert sorted(accepted) == sorted(texts)  # each exactly once
    await eventually(lambda: len(sink.reports) == 10)
    assert {r.carrier_id for r in sink.reports} == {r.carrier_id for r in results.values()}


async def test_several_binds(make: Make, sim: SmscSimulator, sink: RecordingSink) -> None:
    c = await started(make, binds=3, window=2)
    assert sim.bound == 3 and c.health().detail == "3/3 binds up"
    results = await asyncio.gather(*(c.send(out(f"m{i}", f"msg_{i}")) for i in range(30)))
    assert len({r.carrier_id for r in results}) == 30 and sim.accepted == 30
    await eventually(lambda: len(sink.reports) == 30)


async def test_bad_password(make: Make, sim: SmscSimulator) -> None:
    c = make(password="wrong")
    with pytest.raises(AuthError) as e:
        await c.start()
    assert "ESME_RINVPASWD" in e.value.message and e.value.carrier_code == "ESME_RINVPASWD"
    assert not c.health().ok and "ESME_RINVPASWD" in c.health().detail
    assert c.health().retry_after is None  # refused credentials wait for the operator
    assert sim.binds == [("gw", P.ESME_RINVPASWD)]


async def test_password_changed_while_running(make: Make, sim: SmscSimulator) -> None:
    c = await started(make)
    sim.password = "rotated"
    await sim.drop_connections()
    await eventually(lambda: any(s == P.ESME_RINVPASWD for _, s in sim.binds))
    with pytest.raises(AuthError):
        await c.send(out("Hallo"))
    assert not c.health().ok


async def test_unreachable_smsc_is_not_ready(make: Make) -> None:
    c = make(port=free_port(), connect_timeout=1)
    with pytest.raises(NotReadyError) as e:
        await c.start()
    assert "not ready" in e.value.message
    assert not c.health().ok


async def test_refused_texts(make: Make) -> None:
    c = await started(make)
    with pytest.raises(PermanentError) as e:
        await c.send(out(""))
    assert e.value.code == ErrorCode.CONTENT_INVALID
    with pytest.raises(PermanentError) as e:
        await c.send(out("hi", sender="A" * 21))
    assert "source_addr" in e.value.message


async def test_no_receipts_when_not_asked(
    make: Make, sim: SmscSimulator, sink: RecordingSink
) -> None:
    c = await started(make, registered_delivery=0)
    await c.send(out("Hallo"))
    await c.send(out("Hallo 2", "msg_2"))
    await asyncio.sleep(0.1)
    assert sim.submits[0].pdu.fields["registered_delivery"] == 0
    assert sink.reports == [] and sim.deliver_results == []


async def test_close_unbinds(make: Make, sim: SmscSimulator) -> None:
    c = await started(make, binds=2)
    await c.aclose()
    await eventually(lambda: sim.bound == 0)
    assert not c.health().ok
    with pytest.raises(RetryableError):
        await c.send(out("after close"))


async def test_channels_other_than_sms_are_refused(context: ConnectorContext) -> None:
    config = ConnectorConfig(
        "sms1", "smpp", frozenset({"sms", "whatsapp"}), None, {"host": "h", "system_id": "s"}
    )
    with pytest.raises(ConfigError, match=r"connectors\[sms1\]\.channels: .* sms only"):
        SmppConnector(config, context)
