"""The Store contract: every case runs against SQLite and a real Redis server."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.errors import Conflict, CreditLimitExceeded, Forbidden, RateLimited
from gateway.ids import new_id
from gateway.models import (
    ApiKey,
    Attachment,
    Charge,
    Event,
    Job,
    Member,
    Message,
    Status,
    Team,
)
from gateway.store import make_store
from gateway.store.base import Limit, MessageExists, MessageFilter, StatusUpdate, Store

pytestmark = pytest.mark.anyio


def team(clock: FrozenClock, limit: int = 0) -> Team:
    return Team(new_id("team"), "Acme", "starter", limit, "DE", clock.now())


def member(clock: FrozenClock, team_id: str, mobile: str | None = None, **kw: object) -> Member:
    data: dict[str, object] = dict(
        id=new_id("mem"),
        team_id=team_id,
        name="Ada",
        email="ada@example.com",
        mobile=mobile,
        fax=None,
        addons=frozenset({"sms"}),
        active=True,
        created_at=clock.now(),
    )
    data.update(kw)
    return Member(**data)  # type: ignore[arg-type]


def message(clock: FrozenClock, m: Member, conv_id: str, **kw: object) -> Message:
    data: dict[str, object] = dict(
        id=new_id("msg"),
        team_id=m.team_id,
        member_id=m.id,
        conversation_id=conv_id,
        channel="sms",
        direction="outbound",
        from_=m.mobile or "+4915100000000",
        to="+4917600000000",
        text="hi",
        attachments=[],
        status="accepted",
        units=1,
        segments=1,
        encoding="gsm7",
        created_at=clock.now(),
        updated_at=clock.now(),
        connector_id="c1",
    )
    data.update(kw)
    return Message(**data)  # type: ignore[arg-type]


def job(clock: FrozenClock, max_attempts: int = 3, **payload: object) -> Job:
    return Job(new_id("job"), "send", dict(payload), clock.now(), max_attempts)


def charge(t: Team, m: Member, units: int = 1, included: int = 10, price: int = 1000) -> Charge:
    return Charge(t.id, m.id, "sms", "2026-03", units, included, price, t.credit_limit_micros)


async def setup(store: Store, clock: FrozenClock, limit: int = 0) -> tuple[Team, Member, str]:
    t = team(clock, limit)
    await store.create_team(t)
    m = member(clock, t.id, "+4915112345678")
    await store.create_member(m, max_active=2)
    conv = await store.conversation_for(t.id, m.id, "+4915112345678", "+4917600000000", clock.now())
    return t, m, conv.id


# -- directory ---------------------------------------------------------------------------
async def test_team_and_member_round_trip(store: Store, clock: FrozenClock) -> None:
    t = team(clock, 5_000_000)
    await store.create_team(t)
    assert await store.get_team(t.id) == t
    assert await store.list_teams() == [t]
    m = member(clock, t.id, "+4915112345678", fax="+493012345678", addons=frozenset({"fax"}))
    await store.create_member(m, max_active=2)
    assert await store.get_member(m.id) == m
    assert await store.list_members(t.id) == [m]
    assert await store.member_by_number("+493012345678") == m
    assert await store.member_by_number("+4915112345678") == m
    assert await store.member_by_number("+4915199999999") is None
    assert await store.get_team("team_nope") is None


async def test_plan_limit_and_number_taken(store: Store, clock: FrozenClock) -> None:
    t = team(clock)
    await store.create_team(t)
    await store.create_member(member(clock, t.id, "+4915100000001"), max_active=2)
    await store.create_member(member(clock, t.id, "+4915100000002"), max_active=2)
    with pytest.raises(Forbidden) as exc:
        await store.create_member(member(clock, t.id, "+4915100000003"), max_active=2)
    assert exc.value.code == "plan_limit"
    # An inactive member does not count against the plan.
    await store.create_member(member(clock, t.id, None, active=False), max_active=2)
    with pytest.raises(Conflict) as exc2:
        await store.create_member(member(clock, t.id, "+4915100000001"), max_active=10)
    assert exc2.value.code == "number_taken"
    assert len(await store.list_members(t.id)) == 3


async def test_concurrent_member_creation_respects_plan(store: Store, clock: FrozenClock) -> None:
    t = team(clock)
    await store.create_team(t)
    results = await asyncio.gather(
        *(store.create_member(member(clock, t.id, f"+491510000001{i}"), 2) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(1 for r in results if r is None) == 2
    assert len(await store.list_members(t.id)) == 2


async def test_settings_documents_replace_whole(store: Store) -> None:
    assert await store.get_setting("policy:team_x") is None
    await store.put_setting("policy:team_x", {"countries": ["DE"], "flood": {"limit": 20}})
    await store.put_setting("forwarding:mem_y", {"emails": []})
    assert await store.get_setting("policy:team_x") == {"countries": ["DE"], "flood": {"limit": 20}}
    await store.put_setting("policy:team_x", {"countries": ["AT"]})
    assert await store.get_setting("policy:team_x") == {"countries": ["AT"]}
    assert await store.get_setting("forwarding:mem_y") == {"emails": []}


async def test_api_keys_and_attachments(store: Store, clock: FrozenClock) -> None:
    t = team(clock)
    await store.create_team(t)
    key = ApiKey(new_id("key"), t.id, None, "ab" * 32, "gw_abc", clock.now())
    await store.create_api_key(key)
    assert await store.api_key_by_hash("ab" * 32) == key
    assert await store.api_key_by_hash("cd" * 32) is None
    until = clock.now() + timedelta(days=1)
    operator = ApiKey(new_id("key"), "", None, "12" * 32, "gw_op", clock.now(), until, True)
    await store.create_api_key(operator)
    assert await store.api_key_by_hash("12" * 32) == operator
    assert await store.list_api_keys("") == [operator]
    att = Attachment(new_id("att"), t.id, "ef" * 32, 10, "application/pdf", "a.pdf", clock.now())
    await store.put_attachment(att)
    assert await store.get_attachment(att.id) == att
    owned = Attachment(
        new_id("att"), t.id, "ef" * 32, 10, "image/png", None, clock.now(), "mem_x"
    )
    await store.put_attachment(owned)
    assert await store.get_attachment(owned.id) == owned


# -- conversations -----------------------------------------------------------------------
async def test_conversation_is_shared_and_unique(store: Store, clock: FrozenClock) -> None:
    t, m, conv_id = await setup(store, clock)
    again = await asyncio.gather(
        *(
            store.conversation_for(t.id, m.id, "+4915112345678", "+4917600000000", clock.now())
            for _ in range(5)
        )
    )
    assert {c.id for c in again} == {conv_id}
    other = await store.conversation_for(
        t.id, m.id, "+4915112345678", "+4917611111111", clock.now()
    )
    assert other.id != conv_id
    assert (await store.get_conversation(conv_id)) == again[0]


async def test_conversations_listed_by_latest_activity(store: Store, clock: FrozenClock) -> None:
    t, m, first = await setup(store, clock)
    ids = [first]
    for i in range(4):
        clock.advance(minutes=1)
        c = await store.conversation_for(
            t.id, m.id, m.mobile or "", f"+491760000001{i}", clock.now()
        )
        ids.append(c.id)
    clock.advance(minutes=1)
    # A message in the oldest conversation brings it to the top.
    await store.submit_outbound(message(clock, m, first), None, job(clock), [])
    page = await store.list_conversations(t.id, None, None, 2)
    assert [c.id for c in page.items] == [first, ids[4]]
    assert page.next_cursor
    page2 = await store.list_conversations(t.id, m.id, page.next_cursor, 10)
    assert [c.id for c in page2.items] == [ids[3], ids[2], ids[1]]
    assert page2.next_cursor is None


# -- messages ----------------------------------------------------------------------------
async def test_submit_writes_message_job_and_events(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock)
    msg = message(clock, m, conv)
    j = job(clock, message_id=msg.id)
    ev = Event(new_id("evt"), "message.created", t.id, msg.public(), clock.now())
    out = await store.submit_outbound(msg, charge(t, m), j, [ev])
    assert [e.type for e in out] == ["message.created"]
    stored = await store.get_message(msg.id)
    assert stored is not None and stored.charged_period == "2026-03"
    assert (await store.get_job(j.id)) is not None
    events = await store.list_events(0, 100)
    assert [e.id for e in events] == [ev.id]
    assert events[0].seq > 0 and events[0].data == msg.public()
    lines, overage = await store.ledger(t.id, "2026-03")
    assert [(ln.member_id, ln.channel, ln.used) for ln in lines] == [(m.id, "sms", 1)]
    assert overage == 0
    history = await store.status_history(msg.id)
    assert [h.status for h in history] == ["accepted"]


async def test_credit_limit_refuses_and_writes_nothing(store: Store, clock: FrozenClock) -> None:
    # 10 included, 1000 micros per extra unit, limit 3000 micros: 13 units fit, 14 not.
    t, m, conv = await setup(store, clock, limit=3000)
    await store.submit_outbound(message(clock, m, conv, units=12), charge(t, m, 12), job(clock), [])
    await store.submit_outbound(message(clock, m, conv), charge(t, m, 1), job(clock), [])
    refused = message(clock, m, conv, units=2)
    with pytest.raises(CreditLimitExceeded):
        await store.submit_outbound(refused, charge(t, m, 2), job(clock), [])
    assert await store.get_message(refused.id) is None
    lines, overage = await store.ledger(t.id, "2026-03")
    assert lines[0].used == 13 and overage == 3000
    assert (await store.job_counts())["ready"] == 2


async def test_concurrent_charges_never_pass_the_limit(url: str, clock: FrozenClock) -> None:
    # Several connections (as several processes would) race for the last units.
    stores = [make_store(url) for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        t, m, conv = await setup(stores[0], clock, limit=5000)

        async def send(s: Store) -> bool:
            try:
                await s.submit_outbound(message(clock, m, conv), charge(t, m), job(clock), [])
                return True
            except CreditLimitExceeded:
                return False

        results = await asyncio.gather(*(send(stores[i % 4]) for i in range(40)))
        assert sum(results) == 15  # 10 included + 5 x 1000 micros of overage
        lines, overage = await stores[1].ledger(t.id, "2026-03")
        assert lines[0].used == 15 and overage == 5000
    finally:
        for s in stores:
            await s.aclose()


async def test_thresholds_fire_once_each(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    types = []
    for units in (7, 1, 1, 1, 1):  # 7 → 8 (80 %) → 9 → 10 (100 %) → 11
        evs = await store.submit_outbound(
            message(clock, m, conv, units=units), charge(t, m, units), job(clock), []
        )
        types += [(e.type, e.data["threshold"]) for e in evs]
    assert types == [("quota.threshold", 80), ("quota.threshold", 100)]


async def test_release_gives_units_back_once(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=10**9)
    msg = message(clock, m, conv, units=12)
    await store.submit_outbound(msg, charge(t, m, 12), job(clock), [])
    upd = StatusUpdate(status="failed", error={"code": "rejected", "message": "no"}, release=True)
    result = await store.update_message(msg.id, upd, clock.now())
    assert result is not None
    after, changed = result
    assert changed and after.status == "failed" and after.charged_period is None
    assert after.error == {"code": "rejected", "message": "no"}
    await store.update_message(msg.id, StatusUpdate(release=True), clock.now())
    lines, overage = await store.ledger(t.id, "2026-03")
    assert lines[0].used == 0 and overage == 0


async def test_status_moves_forward_only(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    msg = message(clock, m, conv)
    await store.submit_outbound(msg, None, job(clock), [])
    steps = [
        ("sending", True),
        ("queued", True),  # a retry: same rank as sending
        ("sending", True),
        ("sent", True),
        ("sending", False),
        ("read", True),
        ("delivered", False),
        ("failed", False),
    ]
    for status, expect in steps:
        clock.advance(seconds=1)
        res = await store.update_message(msg.id, StatusUpdate(status=status), clock.now())
        assert res is not None and res[1] is expect, status
    final = await store.get_message(msg.id)
    assert final is not None and final.status == "read"
    history = [h.status for h in await store.status_history(msg.id)]
    assert history == ["accepted", "sending", "queued", "sending", "sent", "read"]
    status_events = [e for e in await store.list_events(0, 100) if e.type == "message.status"]
    assert [e.data["status"] for e in status_events] == history[1:]
    assert (
        await store.update_message("msg_missing", StatusUpdate(status="sent"), clock.now()) is None
    )


async def test_carrier_id_index(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    msg = message(clock, m, conv)
    await store.submit_outbound(msg, None, job(clock), [])
    await store.update_message(msg.id, StatusUpdate(status="sent", carrier_id="abc"), clock.now())
    found = await store.message_by_carrier_id("c1", "abc")
    assert found is not None and found.id == msg.id and found.carrier_id == "abc"
    assert await store.message_by_carrier_id("c2", "abc") is None


async def test_every_part_id_names_the_message(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    msg = message(clock, m, conv)
    await store.submit_outbound(msg, None, job(clock), [])
    update = StatusUpdate(status="sent", carrier_id="p1", meta={"parts": 2}, part_ids=("p2",))
    await store.update_message(msg.id, update, clock.now())
    for part in ("p1", "p2"):
        found = await store.message_by_carrier_id("c1", part)
        assert found is not None and found.id == msg.id and found.carrier_id == "p1"
    half = await store.update_message(
        msg.id, StatusUpdate(status="delivered", part="p2"), clock.now()
    )
    assert half is not None and half[0].status == "sent" and not half[1]
    done = await store.update_message(
        msg.id, StatusUpdate(status="delivered", part="p1"), clock.now()
    )
    assert done is not None and done[0].status == "delivered" and done[1]


async def test_list_messages_filters_and_pages(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock)
    other = await store.conversation_for(t.id, m.id, m.mobile or "", "+4917699999999", clock.now())
    ids = []
    for i in range(7):
        conv_id = conv if i % 2 == 0 else other.id
        channel = "sms" if i < 5 else "whatsapp"
        msg = message(clock, m, conv_id, channel=channel)
        await store.submit_outbound(msg, None, job(clock), [])
        ids.append(msg.id)
    flt = MessageFilter(team_id=t.id)
    page = await store.list_messages(flt, None, 3)
    assert [x.id for x in page.items] == ids[::-1][:3]
    page = await store.list_messages(flt, page.next_cursor, 3)
    assert [x.id for x in page.items] == ids[::-1][3:6]
    page = await store.list_messages(flt, page.next_cursor, 3)
    assert [x.id for x in page.items] == ids[:1] and page.next_cursor is None
    by_conv = await store.list_messages(MessageFilter(t.id, conversation_id=conv), None, 10)
    assert [x.id for x in by_conv.items] == [ids[6], ids[4], ids[2], ids[0]]
    wa = await store.list_messages(MessageFilter(t.id, channel="whatsapp"), None, 10)
    assert [x.id for x in wa.items] == [ids[6], ids[5]]
    await store.update_message(ids[1], StatusUpdate(status="sent"), clock.now())
    sent = await store.list_messages(MessageFilter(t.id, status="sent", member_id=m.id), None, 10)
    assert [x.id for x in sent.items] == [ids[1]]
    none = await store.list_messages(MessageFilter("team_other"), None, 10)
    assert none.items == [] and none.next_cursor is None


async def test_inbound_dedupe_and_window(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    first = message(clock, m, conv, direction="inbound", status="received", channel="whatsapp")
    stored, created = await store.store_inbound(first, "c1:wamid.1", [])
    assert created and stored.id == first.id
    dup = message(clock, m, conv, direction="inbound", status="received", channel="whatsapp")
    stored, created = await store.store_inbound(dup, "c1:wamid.1", [])
    assert not created and stored.id == first.id
    assert await store.get_message(dup.id) is None
    c = await store.get_conversation(conv)
    assert c is not None and c.last_inbound_whatsapp_at == clock.now()
    # An older inbound message (reordered webhook) does not move the window back.
    older = message(clock, m, conv, direction="inbound", status="received", channel="whatsapp")
    older.created_at = clock.now() - timedelta(hours=1)
    await store.store_inbound(older, "c1:wamid.0", [])
    c = await store.get_conversation(conv)
    assert c is not None and c.last_inbound_whatsapp_at == clock.now()


async def test_inbound_enqueues_its_jobs_once(store: Store, clock: FrozenClock) -> None:
    """Jobs given with an inbound message (its forwards) are written with it, and not
    again for a duplicate; events and jobs keep their own order and payloads."""
    _t, m, conv = await setup(store, clock)
    first = message(clock, m, conv, direction="inbound", status="received")
    event = Event(new_id("evt"), "message.received", m.team_id, {"n": 1}, clock.now())
    jobs = [job(clock, to="a@example.com"), job(clock, to="+4917612345678")]
    jobs[1].run_at = clock.now() + timedelta(seconds=5)
    _, created = await store.store_inbound(first, "c1:sms.1", [event], jobs)
    assert created and event.seq > 0
    assert [(await store.get_job(j.id)) == j for j in jobs] == [True, True]
    dup = message(clock, m, conv, direction="inbound", status="received")
    again = [job(clock, to="a@example.com")]
    _, created = await store.store_inbound(dup, "c1:sms.1", [], again)
    assert not created and await store.get_job(again[0].id) is None
    assert (await store.job_counts())["ready"] == 2
    vis = timedelta(seconds=30)
    leased = await store.lease_job(clock.now(), "w1", vis)
    assert leased is not None and leased.payload == {"to": "a@example.com"}
    assert await store.lease_job(clock.now(), "w1", vis) is None  # the other is not due yet
    clock.advance(seconds=5)
    later = await store.lease_job(clock.now(), "w1", vis)
    assert later is not None and later.id == jobs[1].id
    [logged] = [e for e in await store.list_events(0, 100) if e.id == event.id]
    assert logged.data == {"n": 1}


# -- jobs --------------------------------------------------------------------------------
async def test_job_lease_ack_retry_dead(store: Store, clock: FrozenClock) -> None:
    j = job(clock, max_attempts=2, n=1)
    await store.enqueue(j)
    vis = timedelta(seconds=30)
    leased = await store.lease_job(clock.now(), "w1", vis)
    assert leased is not None and leased.id == j.id and leased.attempts == 1
    assert leased.payload == {"n": 1} and leased.token
    assert await store.lease_job(clock.now(), "w2", vis) is None
    state = await store.retry_job(j.id, leased.token, clock.now() + timedelta(seconds=60), "boom")
    assert state == "ready"
    assert await store.lease_job(clock.now(), "w1", vis) is None  # not due yet
    clock.advance(seconds=61)
    again = await store.lease_job(clock.now(), "w1", vis)
    assert again is not None and again.attempts == 2
    assert await store.ack_job(j.id, leased.token) is False  # the old lease is gone
    assert await store.retry_job(j.id, again.token or "", clock.now(), "boom2") == "dead"
    dead = await store.list_dead_jobs(10)
    assert [d.id for d in dead] == [j.id] and dead[0].last_error == "boom2"
    assert (await store.job_counts()) == {"ready": 0, "leased": 0, "dead": 1}


async def test_expired_lease_is_taken_over(store: Store, clock: FrozenClock) -> None:
    j = job(clock, max_attempts=2)
    await store.enqueue(j)
    vis = timedelta(seconds=30)
    first = await store.lease_job(clock.now(), "dead-worker", vis)
    assert first is not None
    clock.advance(seconds=31)
    second = await store.lease_job(clock.now(), "w2", vis)
    assert second is not None and second.id == j.id and second.attempts == 2
    assert await store.ack_job(j.id, first.token or "") is False
    clock.advance(seconds=31)
    # Its lease expired again with every attempt used: it is buried, not run a third time.
    assert await store.lease_job(clock.now(), "w3", vis) is None
    dead = await store.list_dead_jobs(10)
    assert [d.id for d in dead] == [j.id] and "lease expired" in (dead[0].last_error or "")


async def test_ack_removes_job(store: Store, clock: FrozenClock) -> None:
    j = job(clock)
    await store.enqueue(j)
    leased = await store.lease_job(clock.now(), "w1", timedelta(seconds=5))
    assert leased is not None and await store.ack_job(j.id, leased.token or "")
    assert await store.get_job(j.id) is None
    assert (await store.job_counts()) == {"ready": 0, "leased": 0, "dead": 0}


async def test_jobs_leased_in_due_order(store: Store, clock: FrozenClock) -> None:
    later = Job(new_id("job"), "send", {}, clock.now() + timedelta(seconds=5), 3)
    sooner = Job(new_id("job"), "send", {}, clock.now() - timedelta(seconds=5), 3)
    await store.enqueue(later)
    await store.enqueue(sooner)
    clock.advance(seconds=10)
    first = await store.lease_job(clock.now(), "w", timedelta(seconds=30))
    second = await store.lease_job(clock.now(), "w", timedelta(seconds=30))
    assert first is not None and second is not None
    assert [first.id, second.id] == [sooner.id, later.id]


async def test_concurrent_leases_hand_out_each_job_once(url: str, clock: FrozenClock) -> None:
    stores = [make_store(url) for _ in range(3)]
    for s in stores:
        await s.open()
    try:
        for _ in range(30):
            await stores[0].enqueue(job(clock))

        async def drain(s: Store, name: str) -> list[str]:
            got = []
            while (j := await s.lease_job(clock.now(), name, timedelta(seconds=60))) is not None:
                got.append(j.id)
                await asyncio.sleep(0)
            return got

        results = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(stores)))
        leased = [i for r in results for i in r]
        assert len(leased) == 30 and len(set(leased)) == 30
    finally:
        for s in stores:
            await s.aclose()


# -- events and idempotency --------------------------------------------------------------
async def test_events_are_numbered_in_order(store: Store, clock: FrozenClock) -> None:
    evs = [Event(new_id("evt"), "x", "team_1", {"i": i}, clock.now()) for i in range(5)]
    out = await store.append_events(evs[:2])
    out += await store.append_events(evs[2:])
    seqs = [e.seq for e in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    listed = await store.list_events(seqs[1], 2)
    assert [e.data["i"] for e in listed] == [2, 3]
    assert [e.seq for e in listed] == seqs[2:4]


async def test_events_at(store: Store, clock: FrozenClock) -> None:
    events = [
        Event(new_id("evt"), "message.received", "t", {"n": n}, clock.now()) for n in range(5)
    ]
    await store.append_events(events)
    seqs = [e.seq for e in events]
    got = await store.events_at([seqs[3], seqs[1], seqs[3], 10**9])
    assert [(e.seq, e.data) for e in got] == [(seqs[1], {"n": 1}), (seqs[3], {"n": 3})]
    assert await store.events_at([]) == []


async def test_idempotency_claim_complete_release(store: Store, clock: FrozenClock) -> None:
    ttl = timedelta(seconds=60)
    assert await store.idem_claim("team_1", "k1", "fp", clock.now(), ttl) is None
    pending = await store.idem_claim("team_1", "k1", "fp", clock.now(), ttl)
    assert pending is not None and pending.status_code is None and pending.fingerprint == "fp"
    await store.idem_complete("team_1", "k1", 202, '{"id": 1}', clock.now())
    done = await store.idem_claim("team_1", "k1", "other", clock.now(), ttl)
    assert done is not None and (done.fingerprint, done.status_code, done.body) == (
        "fp",
        202,
        '{"id": 1}',
    )
    # Keys are scoped per team.
    assert await store.idem_claim("team_2", "k1", "fp", clock.now(), ttl) is None
    # An abandoned claim expires; a released one is free at once.
    assert await store.idem_claim("team_1", "k2", "fp", clock.now(), ttl) is None
    clock.advance(seconds=61)
    assert await store.idem_claim("team_1", "k2", "fp2", clock.now(), ttl) is None
    await store.idem_release("team_1", "k2")
    assert await store.idem_claim("team_1", "k2", "fp3", clock.now(), ttl) is None


async def test_a_pending_claim_hands_out_its_ref(store: Store, clock: FrozenClock) -> None:
    """The ref a claim was made with comes back while it is pending (a retry resumes the
    first request with it), not once the claim is complete."""
    ttl = timedelta(seconds=60)
    assert await store.idem_claim("team_1", "r1", "fp", clock.now(), ttl, "msg_ref") is None
    pending = await store.idem_claim("team_1", "r1", "fp", clock.now(), ttl, "msg_other")
    assert pending is not None and pending.status_code is None and pending.ref == "msg_ref"
    await store.idem_complete("team_1", "r1", 202, '{"id": "msg_ref"}', clock.now())
    done = await store.idem_claim("team_1", "r1", "fp", clock.now(), ttl, "msg_other")
    assert done is not None and (done.status_code, done.body) == (202, '{"id": "msg_ref"}')
    assert await store.idem_claim("team_1", "r2", "fp", clock.now(), ttl) is None
    no_ref = await store.idem_claim("team_1", "r2", "fp", clock.now(), ttl, "msg_x")
    assert no_ref is not None and no_ref.ref is None


async def test_a_repeated_submit_writes_nothing(store: Store, clock: FrozenClock) -> None:
    """A message id already stored is refused before limits and charge: no second charge,
    job, event or limit slot, also when the repeats race each other."""
    t, m, conv = await setup(store, clock, limit=10**9)
    msg = message(clock, m, conv)
    first = limit(count=1)
    await store.submit_outbound(msg, charge(t, m), job(clock), [], [first])
    for _ in range(2):
        again = message(clock, m, conv, id=msg.id, text="changed")
        with pytest.raises(MessageExists) as exc:
            # The limit is full: the repeat is told it exists, not that it is limited.
            await store.submit_outbound(again, charge(t, m), job(clock), [], [first])
        assert exc.value.message_id == msg.id
    racing = [message(clock, m, conv) for _ in range(2)]
    twins = [message(clock, m, conv, id=racing[0].id) for _ in range(3)]
    results = await asyncio.gather(
        *(store.submit_outbound(x, charge(t, m), job(clock), []) for x in [*racing, *twins]),
        return_exceptions=True,
    )
    assert [isinstance(r, MessageExists) for r in results] == [False, False, True, True, True]
    lines, _ = await store.ledger(t.id, "2026-03")
    assert [ln.used for ln in lines] == [3]
    assert (await store.job_counts())["ready"] == 3
    stored = await store.get_message(msg.id)
    assert stored is not None and stored.text == "hi"


async def test_ping(store: Store) -> None:
    await store.ping()
    assert Status.ACCEPTED == "accepted"


# -- send limits of the outbound policy (submit_outbound's ``limits``) ---------------------
def limit(count: int = 3, seconds: int = 60, key: str = "dest:t:+4917600000000") -> Limit:
    what = "member" if key.startswith("member:") else "destination"
    return Limit(key, count, seconds * 1000, what, key.rpartition(":")[2])


async def limited_send(
    store: Store,
    clock: FrozenClock,
    m: Member,
    conv: str,
    *limits: Limit,
    fee: Charge | None = None,
) -> Message:
    msg = message(clock, m, conv)
    await store.submit_outbound(msg, fee, job(clock), [], limits)
    return msg


async def test_limit_is_an_exact_sliding_window(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    lim, start = limit(count=3, seconds=60), clock.now()
    for offset in (0, 10, 20):
        clock.set(start + timedelta(seconds=offset))
        await limited_send(store, clock, m, conv, lim)
    for at, retry in ((30, 30), (59.999, 1)):  # free when the send at 0 is 60 s old
        clock.set(start + timedelta(seconds=at))
        with pytest.raises(RateLimited) as exc:
            await limited_send(store, clock, m, conv, lim)
        assert exc.value.extra == {
            "limit": "destination", "max": 3, "window_seconds": 60, "retry_after": retry,
        }  # fmt: skip
    clock.set(start + timedelta(seconds=60))
    await limited_send(store, clock, m, conv, lim)
    with pytest.raises(RateLimited) as exc:
        await limited_send(store, clock, m, conv, lim)
    assert exc.value.extra["retry_after"] == 10  # now the send at 10 s is the oldest
    # Another key has its own log.
    await limited_send(store, clock, m, conv, limit(count=3, key="dest:t:+4917600000001"))


async def test_a_refused_send_writes_nothing(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock)
    lim = limit(count=1)
    await limited_send(store, clock, m, conv, lim, fee=charge(t, m))
    events = await store.list_events(0, 100)
    refused = message(clock, m, conv)
    j = job(clock)
    with pytest.raises(RateLimited):
        await store.submit_outbound(refused, charge(t, m, 5), j, [], [lim])
    assert await store.get_message(refused.id) is None and await store.get_job(j.id) is None
    assert refused.charged_period is None
    assert (await store.job_counts())["ready"] == 1
    lines, _ = await store.ledger(t.id, "2026-03")
    assert [ln.used for ln in lines] == [1]
    assert await store.list_events(0, 100) == events


async def test_only_accepted_sends_take_a_slot(store: Store, clock: FrozenClock) -> None:
    t, m, conv = await setup(store, clock, limit=0)  # no credit: nothing past `included`
    lim = limit(count=2)
    await limited_send(store, clock, m, conv, lim, fee=charge(t, m, 10))  # all included
    with pytest.raises(CreditLimitExceeded):
        await limited_send(store, clock, m, conv, lim, fee=charge(t, m, 1))
    await limited_send(store, clock, m, conv, lim)  # the refused send left the 2nd slot
    with pytest.raises(RateLimited):
        await limited_send(store, clock, m, conv, lim)


async def test_every_limit_must_have_room(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    a, b = limit(count=2, key="dest:t:a"), limit(count=2, key="dest:t:b")
    member = limit(count=3, key=f"member:{m.id}")
    for _ in range(2):
        await limited_send(store, clock, m, conv, a, member)
    with pytest.raises(RateLimited) as exc:
        await limited_send(store, clock, m, conv, a, member)
    assert exc.value.extra["limit"] == "destination"
    await limited_send(store, clock, m, conv, b, member)  # the refusal took no member slot
    with pytest.raises(RateLimited) as exc:
        await limited_send(store, clock, m, conv, b, member)
    assert exc.value.extra["limit"] == "member" and m.id in exc.value.detail


async def test_retry_after_a_lowered_cap(store: Store, clock: FrozenClock) -> None:
    _t, m, conv = await setup(store, clock)
    start = clock.now()
    for second in range(5):
        clock.set(start + timedelta(seconds=second))
        await limited_send(store, clock, m, conv, limit(count=5))
    clock.set(start + timedelta(seconds=10))
    with pytest.raises(RateLimited) as exc:
        await limited_send(store, clock, m, conv, limit(count=2))
    # 5 in the window, 2 allowed: room again once the 4th oldest (sent at 3 s) is 60 s old.
    assert exc.value.extra["retry_after"] == 53


async def test_a_busy_log_stays_exact(store: Store, clock: FrozenClock) -> None:
    # A send every second for 5 minutes against 50 per minute: expired entries are dropped
    # along the way (backends may do so lazily), yet every minute admits exactly 50.
    _t, m, conv = await setup(store, clock)
    lim, start, accepted = limit(count=50, seconds=60), clock.now(), []
    for second in range(300):
        clock.set(start + timedelta(seconds=second))
        try:
            await limited_send(store, clock, m, conv, lim)
            accepted.append(second)
        except RateLimited as exc:  # free when the window's first send is a minute old
            assert exc.extra["retry_after"] == 60 - second % 60
    assert accepted == [s for s in range(300) if s % 60 < 50]


async def test_concurrent_sends_never_pass_a_limit(url: str, clock: FrozenClock) -> None:
    # Several connections (as several processes would) race for the last slots.
    stores = [make_store(url) for _ in range(4)]
    for s in stores:
        await s.open()
    try:
        _t, m, conv = await setup(stores[0], clock)

        async def send(s: Store) -> bool:
            try:
                await limited_send(s, clock, m, conv, limit(count=7))
                return True
            except RateLimited:
                return False

        results = await asyncio.gather(*(send(stores[i % 4]) for i in range(40)))
        assert sum(results) == 7
        assert (await stores[1].job_counts())["ready"] == 7
        assert not await send(stores[2])
    finally:
        for s in stores:
            await s.aclose()


# -- end send limits -----------------------------------------------------------------------
