"""The SMSC simulator as a server: bind modes, refusals, bad input, the command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from connectors.smpp import pdu as P
from connectors.smpp.session import BindError, Session
from connectors.smpp.simulator import SmscSimulator
from tests.conftest import free_port
from tests.connectors.smpp.conftest import eventually

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


async def raw_exchange(port: int, *frames: bytes, expect: int) -> list[P.Pdu]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framer = P.Framer()
    got: list[P.Pdu] = []
    try:
        for frame in frames:
            writer.write(frame)
        async with asyncio.timeout(5):
            while len(got) < expect:
                data = await reader.read(65536)
                if not data:
                    break
                got += [P.decode(f) for f in framer.feed(data)]
    finally:
        writer.close()
    return got


BIND = {"system_id": "gw", "password": "secret", "interface_version": 0x34}


async def test_bind_modes_and_refusals(sim: SmscSimulator) -> None:
    submit = P.encode(P.SUBMIT_SM, 2, {"destination_addr": "49176", "short_message": b"hi"})
    [unbound] = await raw_exchange(sim.port, submit, expect=1)
    assert unbound.command_id == P.SUBMIT_SM_RESP and unbound.status == P.ESME_RINVBNDSTS
    rx = P.encode(P.BIND_RECEIVER, 1, BIND)
    bind, sub = await raw_exchange(sim.port, rx, submit, expect=2)
    assert bind.command_id == P.BIND_RECEIVER_RESP and bind.status == 0
    assert sub.status == P.ESME_RINVBNDSTS  # a receiver may not submit
    wrong = P.encode(P.BIND_TRANSMITTER, 1, {**BIND, "system_id": "other"})
    [refused] = await raw_exchange(sim.port, wrong, expect=1)
    assert refused.status == P.ESME_RINVSYSID
    tx = P.encode(P.BIND_TRANSMITTER, 1, BIND)
    _, again = await raw_exchange(sim.port, tx, tx, expect=2)
    assert again.status == P.ESME_RALYBND


async def test_malformed_input_gets_generic_nack(sim: SmscSimulator) -> None:
    unknown = P.header(0x00000777, 0, 9, 0)
    no_nul = P.header(P.SUBMIT_SM, 0, 10, 4) + b"abcd"
    nack1, nack2 = await raw_exchange(sim.port, unknown, no_nul, expect=2)
    assert (nack1.command_id, nack1.seq, nack1.status) == (P.GENERIC_NACK, 9, P.ESME_RINVCMDID)
    assert (nack2.seq, nack2.status) == (10, P.ESME_RINVPARLEN)
    [nack3] = await raw_exchange(sim.port, b"\x00\x00\x00\x05" + b"\x00" * 12, expect=1)
    assert nack3.status == P.ESME_RINVCMDLEN


async def test_receipts_wait_for_a_receiver(sim: SmscSimulator) -> None:
    # A transmitter gets no receipts; they wait until a receiver binds.
    got: list[P.Pdu] = []

    def on_deliver(session: Session, pdu: P.Pdu) -> None:
        got.append(pdu)
        session.respond(P.DELIVER_SM_RESP, pdu.seq, 0, b"\x00")

    submit = P.encode(
        P.SUBMIT_SM,
        2,
        {"destination_addr": "49176", "registered_delivery": 1, "short_message": b"hi"},
    )
    await raw_exchange(sim.port, P.encode(P.BIND_TRANSMITTER, 1, BIND), submit, expect=2)
    await asyncio.sleep(0.05)
    session = await Session.connect("127.0.0.1", sim.port, "gw", "secret", on_deliver=on_deliver)
    await eventually(lambda: bool(got))
    assert b"stat:DELIVRD" in got[0].fields["short_message"]
    assert got[0].fields["esm_class"] == 0x04
    await session.unbind()


async def test_unanswered_deliver_sm_is_delivered_again(sim: SmscSimulator) -> None:
    seen: list[int] = []

    def ignore(session: Session, pdu: P.Pdu) -> None:
        seen.append(pdu.seq)

    session = await Session.connect("127.0.0.1", sim.port, "gw", "secret", on_deliver=ignore)
    sim.inject("+4917612345678", "+4915112345671", "hi")
    await eventually(lambda: len(seen) == 1)
    await session.unbind()  # leaves without answering

    def answer(session: Session, pdu: P.Pdu) -> None:
        seen.append(pdu.seq)
        session.respond(P.DELIVER_SM_RESP, pdu.seq, 0, b"\x00")

    session = await Session.connect("127.0.0.1", sim.port, "gw", "secret", on_deliver=answer)
    await eventually(lambda: len(seen) == 2)
    await eventually(lambda: sim.deliver_results == [("mo", 0)])
    await session.unbind()


@pytest.mark.slow
async def test_command_line() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connectors.smpp.simulator",
        "--port",
        str(port),
        "--system-id",
        "cli",
        "--password",
        "pw",
        "--receipt-delay",
        "0",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.strip() == f"SMSC simulator listening on 127.0.0.1:{port}"
        with pytest.raises(BindError):
            await Session.connect("127.0.0.1", port, "cli", "wrong")
        got: list[P.Pdu] = []

        def on_deliver(session: Session, pdu: P.Pdu) -> None:
            got.append(pdu)
            session.respond(P.DELIVER_SM_RESP, pdu.seq, 0, b"\x00")

        session = await Session.connect("127.0.0.1", port, "cli", "pw", on_deliver=on_deliver)
        body = P.encode_body(
            P.SUBMIT_SM,
            {"destination_addr": "49176", "registered_delivery": 1, "short_message": b"hi"},
        )
        resp = await session.request(P.SUBMIT_SM, body)
        assert resp.status == 0 and resp.fields["message_id"]
        await eventually(lambda: bool(got))
        receipted = got[0].tlvs[P.TAG_RECEIPTED_MESSAGE_ID]
        assert receipted == resp.fields["message_id"].encode() + b"\0"
        await session.unbind()
    finally:
        if proc.returncode is None:
            proc.terminate()
        async with asyncio.timeout(20):
            out, _ = await proc.communicate()
    assert proc.returncode == 0 and "accepted 1 submit_sm" in out.decode()
