"""The Store contract for the WhatsApp window and its SMS fallback, on both backends:
``find_conversation`` (a read that never creates) and ``reroute_message`` (release the
WhatsApp units, charge the SMS units and requeue the message in one step)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.errors import CreditLimitExceeded
from gateway.models import Charge, Member, Message, Team
from gateway.store.base import MessageFilter, Reroute, StatusUpdate, Store
from tests.gateway.store.test_contract import charge, job, message, setup

pytestmark = pytest.mark.anyio

CONTACT = "+4917600000000"


def wa_charge(t: Team, m: Member, units: int = 1, included: int = 10, price: int = 1000) -> Charge:
    return Charge(t.id, m.id, "whatsapp", "2026-03", units, included, price, t.credit_limit_micros)


def to_sms(units: int = 1, segments: int = 1) -> Reroute:
    return Reroute(
        from_channel="whatsapp",
        channel="sms",
        connector_id="sms1",
        units=units,
        segments=segments,
        encoding="gsm7",
        meta={"fallback_used": {"from": "whatsapp", "to": "sms"}},
        detail={"fallback": "sms"},
    )


async def whatsapp_sent(
    store: Store, clock: FrozenClock, t: Team, m: Member, conv: str, units: int = 1
) -> Message:
    """A WhatsApp message, charged and accepted by the carrier (``sent``)."""
    msg = message(clock, m, conv, channel="whatsapp", encoding=None, units=units, fallback="sms")
    await store.submit_outbound(msg, wa_charge(t, m, units), job(clock), [])
    await store.update_message(msg.id, StatusUpdate(status="sending"), clock.now())
    await store.update_message(
        msg.id, StatusUpdate(status="sent", carrier_id="wamid.1"), clock.now()
    )
    return msg


async def usage(store: Store, t: Team) -> tuple[dict[str, int], int]:
    lines, overage = await store.ledger(t.id, "2026-03")
    return {ln.channel: ln.used for ln in lines}, overage


async def test_find_conversation_never_creates(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock)
    assert await store.find_conversation(t.id, m.mobile or "", "+4917699999999") is None
    assert await store.find_conversation("team_other", m.mobile or "", CONTACT) is None
    found = await store.find_conversation(t.id, m.mobile or "", CONTACT)
    assert found is not None and found.id == conv and found.last_inbound_whatsapp_at is None
    # It reads the window as stored now (not a cached identity).
    clock.advance(minutes=5)
    inbound = message(
        clock, m, conv, channel="whatsapp", direction="inbound", status="received", units=0
    )
    await store.store_inbound(inbound, "wa:wamid.in", [])
    found = await store.find_conversation(t.id, m.mobile or "", CONTACT)
    assert found is not None and found.last_inbound_whatsapp_at == clock.now()
    page = await store.list_conversations(t.id, None, None, 10)
    assert [c.id for c in page.items] == [conv]


async def test_reroute_moves_units_and_requeues(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    msg = await whatsapp_sent(store, clock, t, m, conv, units=2)
    assert (await usage(store, t))[0] == {"whatsapp": 2}
    after_seq = max(e.seq for e in await store.list_events(0, 100))
    clock.advance(seconds=3)
    retry = job(clock, message_id=msg.id)
    result = await store.reroute_message(msg.id, to_sms(3, 3), charge(t, m, 3), retry, clock.now())
    assert result is not None
    moved, changed = result
    assert changed
    assert (moved.channel, moved.connector_id, moved.units, moved.segments) == ("sms", "sms1", 3, 3)
    assert moved.status == "queued" and moved.carrier_id is None and moved.encoding == "gsm7"
    assert moved.charged_period == "2026-03" and moved.fallback == "sms"
    assert moved.meta["fallback_used"] == {"from": "whatsapp", "to": "sms"}
    assert await store.get_message(msg.id) == moved
    assert (await usage(store, t))[0] == {"whatsapp": 0, "sms": 3}
    history = await store.status_history(msg.id)
    assert [h.status for h in history] == ["accepted", "sending", "sent", "queued"]
    assert history[-1].detail == {"fallback": "sms"} and history[-1].at == clock.now()
    [event] = await store.list_events(after_seq, 100)
    assert event.type == "message.status" and event.data == moved.public()
    assert (await store.get_job(retry.id)) == retry
    # The earlier carrier id still names the message; the channel filter sees the move.
    by_carrier = await store.message_by_carrier_id("c1", "wamid.1")
    assert by_carrier is not None and by_carrier.id == msg.id
    sms = await store.list_messages(MessageFilter(t.id, channel="sms"), None, 10)
    assert [x.id for x in sms.items] == [msg.id]


async def test_reroute_happens_once(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    msg = await whatsapp_sent(store, clock, t, m, conv)
    results = await asyncio.gather(
        *(
            store.reroute_message(msg.id, to_sms(), charge(t, m), job(clock), clock.now())
            for _ in range(4)
        )
    )
    assert sorted(r[1] for r in results if r is not None) == [False, False, False, True]
    assert (await usage(store, t))[0] == {"whatsapp": 0, "sms": 1}
    assert (await store.job_counts())["ready"] == 2  # the first send job and one reroute's
    statuses = [h.status for h in await store.status_history(msg.id)]
    assert statuses.count("queued") == 1


async def test_reroute_leaves_finished_messages_alone(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    assert (
        await store.reroute_message("msg_nope", to_sms(), charge(t, m), None, clock.now()) is None
    )
    for final in ("delivered", "failed"):
        msg = await whatsapp_sent(store, clock, t, m, conv)
        await store.update_message(msg.id, StatusUpdate(status=final), clock.now())
        result = await store.reroute_message(msg.id, to_sms(), charge(t, m), None, clock.now())
        assert result is not None and not result[1] and result[0].channel == "whatsapp"
    assert (await usage(store, t))[0] == {"whatsapp": 2}


async def test_reroute_refused_past_the_limit_writes_nothing(
    store: Store, clock: FrozenClock
) -> None:
    # 10 SMS included at 1000 micros, limit 2000: 12 SMS units fit, the 13th not.
    t, m, conv = await setup(store, clock, limit=2000)
    await store.submit_outbound(message(clock, m, conv, units=12), charge(t, m, 12), job(clock), [])
    msg = await whatsapp_sent(store, clock, t, m, conv)
    before_events = await store.list_events(0, 100)
    before_jobs = await store.job_counts()
    with pytest.raises(CreditLimitExceeded) as exc:
        await store.reroute_message(msg.id, to_sms(), charge(t, m), job(clock), clock.now())
    assert exc.value.extra == {
        "overage_micros": 2000,
        "cost_micros": 1000,
        "credit_limit_micros": 2000,
    }
    unchanged = await store.get_message(msg.id)
    assert unchanged is not None and unchanged.channel == "whatsapp" and unchanged.status == "sent"
    assert unchanged.charged_period == "2026-03"
    assert await usage(store, t) == ({"sms": 12, "whatsapp": 1}, 2000)
    assert await store.list_events(0, 100) == before_events
    assert await store.job_counts() == before_jobs
    assert [h.status for h in await store.status_history(msg.id)][-1] == "sent"


async def test_reroute_counts_the_release_first(store: Store, clock: FrozenClock) -> None:
    # The team is at its limit only because of the WhatsApp units being rerouted: once
    # they go back, the SMS units fit (release and charge in one period's ledger).
    t, m, conv = await setup(store, clock, limit=3000)
    await store.submit_outbound(message(clock, m, conv, units=10), charge(t, m, 10), job(clock), [])
    msg = await whatsapp_sent(store, clock, t, m, conv, units=13)  # 3 over: 3000 micros
    assert await usage(store, t) == ({"sms": 10, "whatsapp": 13}, 3000)
    result = await store.reroute_message(msg.id, to_sms(3, 3), charge(t, m, 3), None, clock.now())
    assert result is not None and result[1]
    assert await usage(store, t) == ({"sms": 13, "whatsapp": 0}, 3000)


async def test_reroute_charges_the_current_period(store: Store, clock: FrozenClock) -> None:
    # Accepted in March, rerouted in April: March gets the units back, April pays.
    t, m, conv = await setup(store, clock, limit=10**9)
    msg = await whatsapp_sent(store, clock, t, m, conv, units=2)
    clock.advance(days=20)
    april = Charge(t.id, m.id, "sms", "2026-04", 2, 10, 1000, t.credit_limit_micros)
    result = await store.reroute_message(msg.id, to_sms(2, 2), april, None, clock.now())
    assert result is not None and result[0].charged_period == "2026-04"
    assert (await usage(store, t))[0] == {"whatsapp": 0}
    lines, _ = await store.ledger(t.id, "2026-04")
    assert [(ln.channel, ln.used) for ln in lines] == [("sms", 2)]
    # A later failure of the SMS gives back April's units, once.
    upd = StatusUpdate(status="failed", error={"code": "rejected"}, release=True)
    await store.update_message(msg.id, upd, clock.now() + timedelta(seconds=1))
    lines, _ = await store.ledger(t.id, "2026-04")
    assert [(ln.channel, ln.used) for ln in lines] == [("sms", 0)]


async def test_reroute_crosses_thresholds(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    await store.submit_outbound(message(clock, m, conv, units=7), charge(t, m, 7), job(clock), [])
    msg = await whatsapp_sent(store, clock, t, m, conv)
    seq = max(e.seq for e in await store.list_events(0, 100))
    await store.reroute_message(msg.id, to_sms(3, 3), charge(t, m, 3), None, clock.now())
    events = await store.list_events(seq, 100)
    assert [e.type for e in events] == ["message.status", "quota.threshold", "quota.threshold"]
    assert [e.data["threshold"] for e in events[1:]] == [80, 100]
    assert all(e.data["used"] == 10 and e.data["channel"] == "sms" for e in events[1:])
    assert events[0].seq < events[1].seq < events[2].seq
