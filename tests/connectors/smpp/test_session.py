"""One SMPP session against a scripted peer: bind, window, keep-alive, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from connectors.smpp import pdu as P
from connectors.smpp.session import BindError, ResponseTimeout, Session, SessionClosed
from tests.connectors.smpp.raw import RawPeer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def peer() -> AsyncIterator[RawPeer]:
    p = RawPeer()
    await p.start()
    try:
        yield p
    finally:
        await p.aclose()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def connect(peer: RawPeer, **kw: object) -> Session:
    return await Session.connect("127.0.0.1", peer.port, "gw", "pw", "VMA", **kw)  # type: ignore[arg-type]


async def test_bind_sends_credentials(peer: RawPeer) -> None:
    s = await connect(peer)
    assert s.bound
    [bind] = peer.received_of(P.BIND_TRANSCEIVER)
    assert bind.fields["system_id"] == "gw" and bind.fields["password"] == "pw"
    assert bind.fields["system_type"] == "VMA" and bind.fields["interface_version"] == 0x34
    await s.unbind()
    assert s.closed and len(peer.received_of(P.UNBIND)) == 1


async def test_bind_refused(peer: RawPeer) -> None:
    peer.bind_status = P.ESME_RINVPASWD
    with pytest.raises(BindError) as e:
        await connect(peer)
    assert e.value.status == P.ESME_RINVPASWD and "ESME_RINVPASWD" in str(e.value)


async def test_window_caps_unanswered_requests(peer: RawPeer) -> None:
    held: list[P.Pdu] = []

    def hold_submits(pdu: P.Pdu) -> list[bytes] | None:
        if pdu.command_id != P.SUBMIT_SM:
            return None
        held.append(pdu)
        return []

    peer.rule = hold_submits
    s = await connect(peer, window=3)
    tasks = [
        asyncio.create_task(s.request(P.SUBMIT_SM, P.encode_body(P.SUBMIT_SM, {})))
        for _ in range(5)
    ]
    await eventually(lambda: len(held) == 3)
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert len(held) == 3 and s.free_slots == 0
    for pdu in list(held):
        peer.send(P.encode(P.SUBMIT_SM_RESP, pdu.seq, {"message_id": f"id{pdu.seq}"}))
    await eventually(lambda: len(held) == 5)
    for pdu in held[3:]:
        peer.send(P.encode(P.SUBMIT_SM_RESP, pdu.seq, {"message_id": f"id{pdu.seq}"}))
    results = await asyncio.gather(*tasks)
    assert sorted(r.fields["message_id"] for r in results) == sorted(f"id{p.seq}" for p in held)
    assert len({p.seq for p in held}) == 5  # every request its own sequence number
    await s.unbind()


async def test_enquire_link_keeps_the_session(peer: RawPeer) -> None:
    s = await connect(peer, enquire_link_interval=0.05)
    await eventually(lambda: len(peer.received_of(P.ENQUIRE_LINK)) >= 2)
    assert s.bound
    await s.unbind()


async def test_unanswered_enquire_link_drops_the_session(peer: RawPeer) -> None:
    peer.answer_enquire_link = False
    s = await connect(peer, enquire_link_interval=0.05, response_timeout=0.1)
    async with asyncio.timeout(5):
        await s.wait_closed()
    assert not s.bound and "enquire_link" in s.close_reason


async def test_response_timeout(peer: RawPeer) -> None:
    peer.rule = lambda pdu: [] if pdu.command_id == P.SUBMIT_SM else None
    s = await connect(peer, response_timeout=0.05)
    with pytest.raises(ResponseTimeout):
        await s.request(P.SUBMIT_SM, P.encode_body(P.SUBMIT_SM, {}))
    assert s.free_slots == s.window  # the slot came back
    await s.unbind()


async def test_connection_lost_with_a_request_in_flight(peer: RawPeer) -> None:
    peer.rule = lambda pdu: [] if pdu.command_id == P.SUBMIT_SM else None
    s = await connect(peer)
    task = asyncio.create_task(s.request(P.SUBMIT_SM, P.encode_body(P.SUBMIT_SM, {})))
    await eventually(lambda: bool(peer.received_of(P.SUBMIT_SM)))
    assert peer.writer is not None
    peer.writer.transport.abort()
    with pytest.raises(SessionClosed) as e:
        await task
    assert e.value.maybe_sent  # the peer read it: it may have acted on it
    with pytest.raises(SessionClosed) as e:
        await s.request(P.SUBMIT_SM, b"")
    assert not e.value.maybe_sent


async def test_malformed_and_unknown_pdus_get_generic_nack(peer: RawPeer) -> None:
    s = await connect(peer)
    peer.send(P.header(0x00000777, 0, 41, 0))  # unknown command
    peer.send(P.header(P.DELIVER_SM, 0, 42, 3) + b"abc")  # service_type without NUL
    await eventually(lambda: len(peer.received_of(P.GENERIC_NACK)) == 2)
    nacks = {p.seq: p.status for p in peer.received_of(P.GENERIC_NACK)}
    assert nacks == {41: P.ESME_RINVCMDID, 42: P.ESME_RINVPARLEN}
    assert s.bound
    await s.request(P.ENQUIRE_LINK, b"")  # still working
    await s.unbind()


async def test_absurd_length_closes_with_generic_nack(peer: RawPeer) -> None:
    s = await connect(peer)
    peer.send(b"\xff\xff\xff\xff" + b"\x00" * 12)
    async with asyncio.timeout(5):
        await s.wait_closed()
    await eventually(lambda: bool(peer.received_of(P.GENERIC_NACK)))
    assert peer.received_of(P.GENERIC_NACK)[0].status == P.ESME_RINVCMDLEN


async def test_deliver_sm_goes_to_the_handler_and_is_answered(peer: RawPeer) -> None:
    got: list[P.Pdu] = []

    def on_deliver(session: Session, pdu: P.Pdu) -> None:
        got.append(pdu)
        session.respond(P.DELIVER_SM_RESP, pdu.seq, P.ESME_ROK, b"\x00")

    s = await connect(peer, on_deliver=on_deliver)
    peer.send(P.encode(P.DELIVER_SM, 77, {"source_addr": "49176", "short_message": b"hi"}))
    await eventually(lambda: bool(peer.received_of(P.DELIVER_SM_RESP)))
    assert got[0].fields["short_message"] == b"hi"
    resp = peer.received_of(P.DELIVER_SM_RESP)[0]
    assert resp.seq == 77 and resp.status == 0
    await s.unbind()


async def test_unbind_from_the_smsc(peer: RawPeer) -> None:
    s = await connect(peer)
    peer.send(P.encode(P.UNBIND, 5))
    async with asyncio.timeout(5):
        await s.wait_closed()
    assert [p.seq for p in peer.received_of(P.UNBIND_RESP)] == [5]
    assert s.close_reason == "unbound by the SMSC"


async def test_unreachable() -> None:
    from tests.conftest import free_port

    with pytest.raises(OSError):
        await Session.connect("127.0.0.1", free_port(), "gw", "pw")


async def test_unbind_lets_requests_in_flight_finish(peer: RawPeer) -> None:
    held: list[P.Pdu] = []

    def hold_submits(pdu: P.Pdu) -> list[bytes] | None:
        if pdu.command_id != P.SUBMIT_SM:
            return None
        held.append(pdu)
        return []

    peer.rule = hold_submits
    s = await connect(peer)
    submit = asyncio.create_task(s.request(P.SUBMIT_SM, P.encode_body(P.SUBMIT_SM, {})))
    await eventually(lambda: bool(held))
    unbinding = asyncio.create_task(s.unbind())
    await eventually(lambda: not s.bound)
    with pytest.raises(SessionClosed) as e:  # no new request while unbinding
        await s.request(P.SUBMIT_SM, b"")
    assert not e.value.maybe_sent
    assert not peer.received_of(P.UNBIND)  # not before the answer
    peer.send(P.encode(P.SUBMIT_SM_RESP, held[0].seq, {"message_id": "late"}))
    assert (await submit).fields["message_id"] == "late"
    await unbinding
    assert len(peer.received_of(P.UNBIND)) == 1 and s.closed
