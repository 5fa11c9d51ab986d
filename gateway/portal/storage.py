"""The portal's storage role: accounts, sessions, sign-in throttling, invitations, drafts,
read state and the inbox index, with one implementation per store backend
(``storage_sqlite.py``, ``storage_redis.py``) and one contract suite
(``tests/gateway/portal/test_storage_contract.py``) run against both.

The portal keeps nothing of its own in the core's ``Store``: its data lives beside the
core's, in the same SQLite file or Redis database, through the store's backend access.

The inbox index is a read model of the event log (``indexer.py``): one ``Summary`` per
conversation, kept up to date by applying the events in ``seq`` order exactly once
(``apply_index`` moves the index cursor with a compare-and-set, so several processes may
index at once without counting an event twice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway.models import iso, parse_iso

ROLE_MEMBER = "member"
ROLE_ADMIN = "admin"
ROLES = (ROLE_MEMBER, ROLE_ADMIN)
CHANNEL_BITS = {"sms": 1, "whatsapp": 2, "fax": 4}
SEARCH_KEEP = 4000  # characters of folded message text kept per conversation for search
SNIPPET = 160  # characters of the last message shown in the list


def ms(at: datetime) -> int:
    """Milliseconds since the epoch: the inbox's sort key."""
    return int(at.timestamp() * 1000)


def _t(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


def _p(value: str | None) -> datetime | None:
    return None if value is None else parse_iso(value)


INVITE_QUEUED = "queued"  # its job waits, or retries a relay that did not take it
INVITE_SENT = "sent"  # the relay took it
INVITE_FAILED = "failed"  # refused by the relay, or given up after the last try


@dataclass(frozen=True, slots=True)
class Invitation:
    """Where a member's latest invitation mail is (the team page shows it): ``state``
    since ``at``, mailed by the job ``job``; ``reason`` says why the last try did not get
    through (queued again) or why it failed; ``tries`` counts the tries so far."""

    state: str  # INVITE_QUEUED | INVITE_SENT | INVITE_FAILED
    job: str
    at: datetime
    reason: str | None = None
    tries: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "state": self.state,
            "job": self.job,
            "at": iso(self.at),
            "reason": self.reason,
            "tries": self.tries,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Invitation:
        """Load what :meth:`to_dict` wrote."""
        return cls(
            data["state"],
            data["job"],
            parse_iso(data["at"]),
            data.get("reason"),
            int(data.get("tries") or 0),
        )


@dataclass(slots=True)
class Account:
    """A member's portal sign-in: email (unique, case-folded), role and password hash."""

    member_id: str
    team_id: str
    email: str
    role: str
    created_at: datetime
    password_hash: str | None = None  # None until the member set one (invited)
    password_changed_at: datetime | None = None
    invitation: Invitation | None = None  # the latest invitation mail, once one was asked

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "member_id": self.member_id,
            "team_id": self.team_id,
            "email": self.email,
            "role": self.role,
            "created_at": iso(self.created_at),
            "password_hash": self.password_hash,
            "password_changed_at": _t(self.password_changed_at),
            "invitation": None if self.invitation is None else self.invitation.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Account:
        """Load what :meth:`to_dict` wrote."""
        invitation = data.get("invitation")
        return cls(
            data["member_id"],
            data["team_id"],
            data["email"],
            data["role"],
            parse_iso(data["created_at"]),
            data.get("password_hash"),
            _p(data.get("password_changed_at")),
            Invitation.from_dict(invitation) if isinstance(invitation, dict) else None,
        )


@dataclass(slots=True)
class Session:
    """A signed-in browser. ``id`` is the SHA-256 of the cookie's secret (the secret itself
    is never stored); ``csrf`` is the token its forms carry for browsers without
    Fetch Metadata or Origin headers."""

    id: str
    member_id: str
    team_id: str
    csrf: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute end; idleness is checked against last_seen_at

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "id": self.id,
            "member_id": self.member_id,
            "team_id": self.team_id,
            "csrf": self.csrf,
            "created_at": iso(self.created_at),
            "last_seen_at": iso(self.last_seen_at),
            "expires_at": iso(self.expires_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        """Load what :meth:`to_dict` wrote."""
        return cls(
            data["id"],
            data["member_id"],
            data["team_id"],
            data["csrf"],
            parse_iso(data["created_at"]),
            parse_iso(data["last_seen_at"]),
            parse_iso(data["expires_at"]),
        )


@dataclass(slots=True)
class Draft:
    """What a member has typed in a conversation's composer and not sent yet."""

    member_id: str
    conversation_id: str
    text: str
    channel: str | None
    updated_at: datetime


@dataclass(slots=True)
class Summary:
    """One conversation as the inbox lists it (built from the event log)."""

    conversation_id: str
    team_id: str
    member_id: str
    member_number: str
    remote_number: str
    last_at: datetime
    last_message_id: str
    last_text: str | None
    last_channel: str
    last_direction: str
    last_status: str
    channels: list[str] = field(default_factory=list)
    contact_name: str | None = None
    inbound_count: int = 0
    failed: list[str] = field(default_factory=list)  # failed outbound messages not retried
    whatsapp_inbound_at: datetime | None = None
    read_count: int = 0  # the member's read state: inbound messages seen

    @property
    def unread(self) -> int:
        """Inbound messages the member has not seen yet."""
        return max(0, self.inbound_count - self.read_count)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store (without the read state, which is kept apart)."""
        return {
            "conversation_id": self.conversation_id,
            "team_id": self.team_id,
            "member_id": self.member_id,
            "member_number": self.member_number,
            "remote_number": self.remote_number,
            "last_at": iso(self.last_at),
            "last_message_id": self.last_message_id,
            "last_text": self.last_text,
            "last_channel": self.last_channel,
            "last_direction": self.last_direction,
            "last_status": self.last_status,
            "channels": list(self.channels),
            "contact_name": self.contact_name,
            "inbound_count": self.inbound_count,
            "failed": list(self.failed),
            "whatsapp_inbound_at": _t(self.whatsapp_inbound_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], read_count: int = 0) -> Summary:
        """Load what :meth:`to_dict` wrote."""
        return cls(
            data["conversation_id"],
            data["team_id"],
            data["member_id"],
            data["member_number"],
            data["remote_number"],
            parse_iso(data["last_at"]),
            data["last_message_id"],
            data.get("last_text"),
            data["last_channel"],
            data["last_direction"],
            data["last_status"],
            list(data.get("channels") or []),
            data.get("contact_name"),
            int(data.get("inbound_count") or 0),
            list(data.get("failed") or []),
            _p(data.get("whatsapp_inbound_at")),
            read_count,
        )


@dataclass(slots=True, frozen=True)
class InboxQuery:
    """Filters of the conversation list; ``search`` is already folded (``search.fold``)."""

    member_id: str
    channel: str | None = None
    unread: bool = False
    failed: bool = False
    search: str | None = None


@dataclass(slots=True)
class InboxPage:
    """One page of the conversation list, newest activity first."""

    items: list[Summary]
    next_cursor: str | None


@dataclass(slots=True)
class IndexChange:
    """What one event does to one conversation's summary (``indexer.py`` builds them).

    Applied in order by ``apply_index`` (``merge_change``): a new message whose (time in
    ms, id) is not older than the summary's last one becomes the last message; a change
    about the last message updates its status (and text, channel). Counters add up.
    """

    conversation_id: str
    team_id: str
    member_id: str
    member_number: str
    remote_number: str
    message_id: str
    at: datetime
    channel: str
    direction: str
    status: str
    text: str | None = None
    new_message: bool = False  # created or received: may become the last message
    inbound: bool = False  # a received message (counts as unread)
    failed: bool = False  # the message is failed now (listed until retried)
    contact_name: str | None = None
    whatsapp_inbound_at: datetime | None = None
    search_text: str = ""  # folded text appended to the conversation's search text
    # Folded name and number forms (``search.head``): replaces the stored head when the
    # change names the contact or the summary is new.
    search_head: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The change as a JSON document (the Redis script reads it)."""
        return {
            "conversation_id": self.conversation_id,
            "team_id": self.team_id,
            "member_id": self.member_id,
            "member_number": self.member_number,
            "remote_number": self.remote_number,
            "message_id": self.message_id,
            "at": iso(self.at),
            "at_ms": ms(self.at),
            "channel": self.channel,
            "direction": self.direction,
            "status": self.status,
            "text": self.text,
            "new_message": self.new_message,
            "inbound": self.inbound,
            "failed": self.failed,
            "contact_name": self.contact_name,
            "whatsapp_inbound_at": _t(self.whatsapp_inbound_at),
            "search_text": self.search_text,
            "search_head": self.search_head,
        }


def merge_change(summary: Summary | None, change: IndexChange) -> Summary:
    """The summary after ``change`` (the rule both implementations follow; the Redis
    script spells the same rule out in Lua)."""
    s = summary
    if s is None:
        s = Summary(
            change.conversation_id,
            change.team_id,
            change.member_id,
            change.member_number,
            change.remote_number,
            change.at,
            change.message_id,
            change.text,
            change.channel,
            change.direction,
            change.status,
        )
    elif change.new_message and (ms(change.at), change.message_id) >= (
        ms(s.last_at),
        s.last_message_id,
    ):
        s.last_at = change.at
        s.last_message_id = change.message_id
        s.last_text = change.text
        s.last_channel = change.channel
        s.last_direction = change.direction
        s.last_status = change.status
    elif change.message_id == s.last_message_id:
        s.last_status = change.status
        if change.text is not None:
            s.last_text = change.text
        s.last_channel = change.channel
    if change.channel not in s.channels:
        s.channels.append(change.channel)
        s.channels.sort()
    if change.inbound:
        s.inbound_count += 1
    if change.failed and change.message_id not in s.failed:
        s.failed.append(change.message_id)
    if change.contact_name:
        s.contact_name = change.contact_name
    if change.whatsapp_inbound_at is not None and (
        s.whatsapp_inbound_at is None or change.whatsapp_inbound_at > s.whatsapp_inbound_at
    ):
        s.whatsapp_inbound_at = change.whatsapp_inbound_at
    return s


def snippet(text: str | None) -> str | None:
    """The start of a message text as the list shows it."""
    if text is None:
        return None
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…"


class PortalStore(Protocol):
    """The portal's data (see the module docstring). Every method is atomic on its own."""

    # -- accounts -----------------------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace the member's account. ``Conflict(code="email_taken")`` when
        another member's account has the same email."""
        ...

    async def get_account(self, member_id: str) -> Account | None:
        """The member's account, or None."""
        ...

    async def account_by_email(self, email: str) -> Account | None:
        """The account with this (case-folded) email, or None."""
        ...

    async def list_accounts(self, team_id: str) -> list[Account]:
        """The team's accounts, oldest first."""
        ...

    async def set_password(self, member_id: str, password_hash: str, now: datetime) -> bool:
        """Store a new password hash and end every session of the member; False when the
        member has no account."""
        ...

    async def set_role(self, member_id: str, role: str) -> bool:
        """Change the member's role; False when the member has no account."""
        ...

    async def set_invitation(
        self, member_id: str, invitation: Invitation, *, if_job: str | None = None
    ) -> bool:
        """Record where the member's latest invitation mail is. With ``if_job``, only
        while the recorded invitation is that job's (a newer one is never overwritten by
        an older job). False when the member has no account or the condition fails."""
        ...

    # -- sessions -----------------------------------------------------------------------
    async def create_session(self, session: Session, replaces: str | None = None) -> None:
        """Store a new session; the session ``replaces`` (the browser's previous one, if
        any) ends with it: sessions rotate at sign-in. A session is gone by itself some
        time after ``expires_at`` (the caller checks the times)."""
        ...

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None when it ended."""
        ...

    async def touch_session(self, session_id: str, now: datetime) -> None:
        """Record activity (idle sessions end)."""
        ...

    async def end_session(self, session_id: str) -> None:
        """End one session (sign-out)."""
        ...

    async def end_sessions(self, member_id: str) -> int:
        """End every session of the member; how many there were."""
        ...

    # -- sign-in throttling ---------------------------------------------------------------
    async def note_failure(self, keys: Sequence[str], now: datetime, window_s: int) -> None:
        """Record one failed sign-in under each key (kept for ``window_s`` seconds)."""
        ...

    async def failures(
        self, keys: Sequence[str], now: datetime, window_s: int
    ) -> dict[str, tuple[int, datetime | None]]:
        """Per key: failed sign-ins within the last ``window_s`` seconds, and the oldest
        of them (when it leaves the window, one more attempt is allowed)."""
        ...

    async def clear_failures(self, key: str) -> None:
        """Forget the failures under ``key`` (a successful sign-in of that account)."""
        ...

    # -- invitations ------------------------------------------------------------------------
    async def create_invite(
        self, token_hash: str, member_id: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a one-time invitation (the SHA-256 of its token), valid until
        ``expires_at``."""
        ...

    async def take_invite(self, token_hash: str, now: datetime) -> str | None:
        """Use an invitation: its member id, and it is gone; None when unknown, used or
        expired."""
        ...

    async def peek_invite(self, token_hash: str, now: datetime) -> str | None:
        """The member id of a valid invitation, without using it."""
        ...

    # -- drafts and read state ----------------------------------------------------------------
    async def put_draft(self, draft: Draft) -> None:
        """Keep the member's draft of a conversation (an empty text deletes it)."""
        ...

    async def get_draft(self, member_id: str, conversation_id: str) -> Draft | None:
        """The member's draft of the conversation, or None."""
        ...

    async def mark_read(self, member_id: str, conversation_id: str) -> None:
        """Everything received in the conversation so far counts as seen by the member."""
        ...

    # -- the inbox index -----------------------------------------------------------------------
    async def index_cursor(self) -> int:
        """The seq of the last event applied to the index (0: none)."""
        ...

    async def apply_index(self, after_seq: int, new_seq: int, changes: list[IndexChange]) -> bool:
        """If the cursor is still ``after_seq``: apply ``changes`` in order (``merge_change``)
        and move the cursor to ``new_seq``; False (nothing written) otherwise."""
        ...

    async def get_summary(self, conversation_id: str, member_id: str) -> Summary | None:
        """The conversation's summary with the member's read state, or None."""
        ...

    async def list_inbox(self, query: InboxQuery, cursor: str | None, limit: int) -> InboxPage:
        """The member's conversations matching ``query``, newest activity first."""
        ...

    async def unread_total(self, member_id: str) -> int:
        """Conversations of the member with something unread."""
        ...

    async def clear_failed(self, conversation_id: str, message_id: str) -> None:
        """The failed message was retried (or dismissed): no longer marks the conversation."""
        ...

