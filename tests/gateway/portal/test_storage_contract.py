"""The PortalStore contract, run against both backends (SQLite and a real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.errors import Conflict
from gateway.portal import search
from gateway.portal.roles import PORTAL_STORE
from gateway.portal.storage import (
    INVITE_QUEUED,
    INVITE_SENT,
    Account,
    Draft,
    InboxQuery,
    IndexChange,
    Invitation,
    PortalStore,
    Session,
)
from gateway.store.base import Store

pytestmark = pytest.mark.anyio

MEMBER = "mem_A"
OTHER = "mem_B"


@pytest.fixture
async def ps(store: Store) -> AsyncIterator[PortalStore]:
    """The portal's storage on the store under test."""
    yield await PORTAL_STORE.open(store)


def account(member: str, email: str, clock: FrozenClock, team: str = "team_1") -> Account:
    return Account(member, team, email, "member", clock.now())


def session(sid: str, member: str, clock: FrozenClock) -> Session:
    now = clock.now()
    return Session(sid, member, "team_1", "csrf-" + sid, now, now, now + timedelta(days=1))


def change(
    conv: str,
    msg: str,
    clock: FrozenClock,
    *,
    seconds: int = 0,
    member: str = MEMBER,
    channel: str = "sms",
    direction: str = "inbound",
    status: str = "received",
    text: str | None = "hallo",
    new: bool = True,
    name: str | None = None,
    failed: bool = False,
) -> IndexChange:
    remote = "+4917612345678" if conv.endswith("1") else "+4917699999999"
    return IndexChange(
        conversation_id=conv,
        team_id="team_1",
        member_id=member,
        member_number="+4915112345671",
        remote_number=remote,
        message_id=msg,
        at=clock.now() + timedelta(seconds=seconds),
        channel=channel,
        direction=direction,
        status=status,
        text=text,
        new_message=new,
        inbound=new and direction == "inbound",
        failed=failed,
        contact_name=name,
        search_text=search.fold(text or "") if new else "",
        search_head=search.head(remote, name),
    )


async def test_accounts_have_unique_emails(ps: PortalStore, clock: FrozenClock) -> None:
    await ps.put_account(account(MEMBER, "Anna@Example.com", clock))
    got = await ps.account_by_email("anna@example.COM")
    assert got is not None and got.member_id == MEMBER and got.email == "anna@example.com"
    with pytest.raises(Conflict) as err:
        await ps.put_account(account(OTHER, "ANNA@example.com", clock))
    assert err.value.code == "email_taken"
    # Changing one's own email frees the old one.
    await ps.put_account(account(MEMBER, "anna.s@example.com", clock))
    assert await ps.account_by_email("anna@example.com") is None
    await ps.put_account(account(OTHER, "anna@example.com", clock))
    assert [a.member_id for a in await ps.list_accounts("team_1")] == [MEMBER, OTHER]
    assert await ps.list_accounts("team_2") == []


async def test_password_change_ends_every_session(ps: PortalStore, clock: FrozenClock) -> None:
    await ps.put_account(account(MEMBER, "a@example.com", clock))
    await ps.put_account(account(OTHER, "b@example.com", clock))
    await ps.create_session(session("s1", MEMBER, clock))
    await ps.create_session(session("s2", MEMBER, clock))
    await ps.create_session(session("s3", OTHER, clock))
    assert await ps.set_password(MEMBER, "hash", clock.now())
    assert await ps.get_session("s1") is None and await ps.get_session("s2") is None
    assert await ps.get_session("s3") is not None
    acct = await ps.get_account(MEMBER)
    assert acct is not None and acct.password_hash == "hash"
    assert acct.password_changed_at == clock.now()
    assert not await ps.set_password("mem_nobody", "hash", clock.now())
    assert await ps.set_role(OTHER, "admin")
    acct = await ps.get_account(OTHER)
    assert acct is not None and acct.role == "admin"
    assert await ps.get_session("s3") is not None  # a role change keeps sessions


async def test_sessions_rotate_touch_and_end(ps: PortalStore, clock: FrozenClock) -> None:
    await ps.create_session(session("old", MEMBER, clock))
    await ps.create_session(session("new", MEMBER, clock), replaces="old")
    assert await ps.get_session("old") is None
    got = await ps.get_session("new")
    assert got is not None and got.csrf == "csrf-new" and got.member_id == MEMBER
    clock.set(clock.now() + timedelta(minutes=5))
    await ps.touch_session("new", clock.now())
    got = await ps.get_session("new")
    assert got is not None and got.last_seen_at == clock.now()
    await ps.create_session(session("other", MEMBER, clock))
    await ps.end_session("new")
    assert await ps.get_session("new") is None
    assert await ps.end_sessions(MEMBER) == 1
    assert await ps.get_session("other") is None
    await ps.touch_session("gone", clock.now())  # nothing to touch: no error


async def test_failures_slide_out_of_the_window(ps: PortalStore, clock: FrozenClock) -> None:
    t0 = clock.now()
    await ps.note_failure(["acct:a", "addr:1"], t0, 60)
    clock.set(t0 + timedelta(seconds=30))
    await ps.note_failure(["acct:a"], clock.now(), 60)
    got = await ps.failures(["acct:a", "addr:1", "addr:2"], clock.now(), 60)
    assert got["acct:a"] == (2, t0) and got["addr:1"] == (1, t0) and got["addr:2"] == (0, None)
    got = await ps.failures(["acct:a"], t0 + timedelta(seconds=61), 60)
    assert got["acct:a"] == (1, t0 + timedelta(seconds=30))
    await ps.clear_failures("acct:a")
    assert (await ps.failures(["acct:a"], clock.now(), 60))["acct:a"] == (0, None)


async def test_invites_are_used_once(ps: PortalStore, clock: FrozenClock) -> None:
    await ps.create_invite("tok1", MEMBER, clock.now(), clock.now() + timedelta(hours=1))
    assert await ps.peek_invite("tok1", clock.now()) == MEMBER
    assert await ps.take_invite("tok1", clock.now()) == MEMBER
    assert await ps.take_invite("tok1", clock.now()) is None
    assert await ps.peek_invite("tok1", clock.now()) is None
    assert await ps.take_invite("nope", clock.now()) is None
    await ps.create_invite("tok2", MEMBER, clock.now(), clock.now() + timedelta(hours=1))
    later = clock.now() + timedelta(hours=1)
    assert await ps.peek_invite("tok2", later) is None
    assert await ps.take_invite("tok2", later) is None


async def test_the_latest_invitation_is_recorded_on_the_account(
    ps: PortalStore, clock: FrozenClock
) -> None:
    await ps.put_account(account(MEMBER, "a@example.com", clock))
    await ps.create_session(session("s1", MEMBER, clock))
    first = Invitation(INVITE_QUEUED, "job_1", clock.now())
    assert await ps.set_invitation(MEMBER, first)
    got = await ps.get_account(MEMBER)
    assert got is not None and got.invitation == first
    # The job that mails it moves it on, with the reason of a try that did not get through.
    clock.set(clock.now() + timedelta(seconds=5))
    retrying = Invitation(INVITE_QUEUED, "job_1", clock.now(), "451 try later", tries=1)
    assert await ps.set_invitation(MEMBER, retrying, if_job="job_1")
    got = await ps.get_account(MEMBER)
    assert got is not None and got.invitation == retrying
    # A newer invitation is never overwritten by the older job.
    newer = Invitation(INVITE_QUEUED, "job_2", clock.now())
    assert await ps.set_invitation(MEMBER, newer)
    old_done = Invitation(INVITE_SENT, "job_1", clock.now(), tries=2)
    assert not await ps.set_invitation(MEMBER, old_done, if_job="job_1")
    got = await ps.get_account(MEMBER)
    assert got is not None and got.invitation == newer
    # It changes nothing else: the password, the role, the sessions stay.
    assert await ps.set_password(MEMBER, "hash", clock.now())
    await ps.create_session(session("s2", MEMBER, clock))
    sent = Invitation(INVITE_SENT, "job_2", clock.now(), tries=1)
    assert await ps.set_invitation(MEMBER, sent, if_job="job_2")
    got = await ps.get_account(MEMBER)
    assert got is not None and got.invitation == sent and got.password_hash == "hash"
    assert got.role == "member" and await ps.get_session("s2") is not None
    assert [a.invitation for a in await ps.list_accounts("team_1")] == [sent]
    # No account: nothing recorded; no invitation yet: a condition fails.
    assert not await ps.set_invitation("mem_nobody", first)
    await ps.put_account(account(OTHER, "b@example.com", clock))
    assert not await ps.set_invitation(OTHER, first, if_job="job_1")
    got = await ps.get_account(OTHER)
    assert got is not None and got.invitation is None


async def test_drafts(ps: PortalStore, clock: FrozenClock) -> None:
    await ps.put_draft(Draft(MEMBER, "conv_1", "Hallo Welt", "whatsapp", clock.now()))
    got = await ps.get_draft(MEMBER, "conv_1")
    assert got is not None and (got.text, got.channel) == ("Hallo Welt", "whatsapp")
    assert await ps.get_draft(OTHER, "conv_1") is None
    await ps.put_draft(Draft(MEMBER, "conv_1", "", None, clock.now()))
    assert await ps.get_draft(MEMBER, "conv_1") is None


async def test_index_cursor_is_compare_and_set(ps: PortalStore, clock: FrozenClock) -> None:
    assert await ps.index_cursor() == 0
    assert await ps.apply_index(0, 3, [change("conv_1", "msg_01", clock)])
    assert not await ps.apply_index(0, 5, [change("conv_1", "msg_02", clock)])
    assert await ps.index_cursor() == 3
    summary = await ps.get_summary("conv_1", MEMBER)
    assert summary is not None and summary.inbound_count == 1  # the refused batch: nothing


async def test_summaries_follow_the_messages(ps: PortalStore, clock: FrozenClock) -> None:
    changes = [
        change("conv_1", "msg_01", clock, text="Grüß Gott", name="Jürgen Müller"),
        change(
            "conv_1",
            "msg_02",
            clock,
            seconds=5,
            direction="outbound",
            status="accepted",
            channel="whatsapp",
            text="Hallo zurück",
        ),
        # A status of the last message, then a late status of an older one.
        change(
            "conv_1",
            "msg_02",
            clock,
            seconds=6,
            direction="outbound",
            status="delivered",
            channel="whatsapp",
            text="Hallo zurück",
            new=False,
        ),
        change("conv_1", "msg_01", clock, seconds=7, status="received", new=False, text=None),
    ]
    assert await ps.apply_index(0, 4, changes)
    s = await ps.get_summary("conv_1", MEMBER)
    assert s is not None
    assert s.last_message_id == "msg_02" and s.last_status == "delivered"
    assert s.last_text == "Hallo zurück" and s.last_direction == "outbound"
    assert s.channels == ["sms", "whatsapp"] and s.contact_name == "Jürgen Müller"
    assert s.inbound_count == 1 and s.unread == 1
    assert s.last_at == clock.now() + timedelta(seconds=5)
    await ps.mark_read(MEMBER, "conv_1")
    s = await ps.get_summary("conv_1", MEMBER)
    assert s is not None and s.unread == 0
    assert await ps.unread_total(MEMBER) == 0
    # An older message arriving late does not become the last one.
    assert await ps.apply_index(4, 5, [change("conv_1", "msg_00", clock, seconds=-60)])
    s = await ps.get_summary("conv_1", MEMBER)
    assert s is not None and s.last_message_id == "msg_02" and s.unread == 1


async def test_list_filters_search_and_pages(ps: PortalStore, clock: FrozenClock) -> None:
    changes = []
    for i in range(7):
        conv = f"conv_{i:02d}"
        changes.append(
            change(
                conv,
                f"msg_{i:02d}",
                clock,
                seconds=i,
                channel="sms" if i % 2 else "whatsapp",
                text=f"Nachricht {i}",
                name="Straßer" if i == 3 else None,
            )
        )
    changes.append(change("conv_99", "msg_99", clock, seconds=99, member=OTHER))
    changes.append(
        change(
            "conv_05",
            "msg_50",
            clock,
            seconds=50,
            direction="outbound",
            status="failed",
            failed=True,
            text="kaputt",
        )
    )
    assert await ps.apply_index(0, 9, changes)
    await ps.mark_read(MEMBER, "conv_02")

    async def ids(query: InboxQuery, limit: int = 50) -> list[str]:
        out, cursor = [], None
        while True:
            page = await ps.list_inbox(query, cursor, limit)
            out += [s.conversation_id for s in page.items]
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    everything = ["conv_05", "conv_06", "conv_04", "conv_03", "conv_02", "conv_01", "conv_00"]
    assert await ids(InboxQuery(MEMBER)) == everything
    assert await ids(InboxQuery(MEMBER), limit=2) == everything
    assert await ids(InboxQuery(MEMBER, channel="sms")) == ["conv_05", "conv_03", "conv_01"]
    assert await ids(InboxQuery(MEMBER, unread=True), limit=3) == [
        c for c in everything if c != "conv_02"
    ]
    assert await ids(InboxQuery(MEMBER, failed=True)) == ["conv_05"]
    assert await ids(InboxQuery(MEMBER, search=search.fold_query("STRASSER"))) == ["conv_03"]
    assert await ids(InboxQuery(MEMBER, search=search.fold_query("kaputt"))) == ["conv_05"]
    assert await ids(InboxQuery(MEMBER, search=search.fold_query("0176 99999"))) == [
        c for c in everything if c not in ("conv_01",)
    ]
    assert await ids(InboxQuery(MEMBER, channel="whatsapp", unread=True)) == [
        "conv_06",
        "conv_04",
        "conv_00",
    ]
    assert await ids(InboxQuery(OTHER)) == ["conv_99"]
    assert await ps.unread_total(MEMBER) == 6
    await ps.clear_failed("conv_05", "msg_50")
    assert await ids(InboxQuery(MEMBER, failed=True)) == []
    s = await ps.get_summary("conv_05", MEMBER)
    assert s is not None and s.failed == [] and s.last_status == "failed"
