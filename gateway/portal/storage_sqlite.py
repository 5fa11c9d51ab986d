"""``PortalStore`` on SQLite: tables beside the core's in the store's file, written through
the store's engine (so portal writes share the core's group commits)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gateway import jsoncodec
from gateway.errors import Conflict
from gateway.models import iso, parse_iso
from gateway.portal.storage import (
    CHANNEL_BITS,
    SEARCH_KEEP,
    Account,
    Draft,
    InboxPage,
    InboxQuery,
    IndexChange,
    Invitation,
    Session,
    Summary,
    merge_change,
)
from gateway.store.sqlite_engine import Engine

# Released steps never change; a new schema is a step appended.
STEPS = (
    """
    CREATE TABLE IF NOT EXISTS portal_accounts (
        member_id TEXT PRIMARY KEY, team_id TEXT NOT NULL, email TEXT NOT NULL UNIQUE,
        created REAL NOT NULL, doc TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS portal_accounts_team ON portal_accounts (team_id, created);
    CREATE TABLE IF NOT EXISTS portal_sessions (
        id TEXT PRIMARY KEY, member_id TEXT NOT NULL, expires REAL NOT NULL, doc TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS portal_sessions_member ON portal_sessions (member_id);
    CREATE TABLE IF NOT EXISTS portal_failures (key TEXT NOT NULL, at REAL NOT NULL);
    CREATE INDEX IF NOT EXISTS portal_failures_key ON portal_failures (key, at);
    CREATE TABLE IF NOT EXISTS portal_invites (
        token TEXT PRIMARY KEY, member_id TEXT NOT NULL, expires REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS portal_drafts (
        member_id TEXT NOT NULL, conversation_id TEXT NOT NULL, text TEXT NOT NULL,
        channel TEXT, updated_at TEXT NOT NULL,
        PRIMARY KEY (member_id, conversation_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS portal_reads (
        member_id TEXT NOT NULL, conversation_id TEXT NOT NULL, read_count INTEGER NOT NULL,
        PRIMARY KEY (member_id, conversation_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS portal_summaries (
        conversation_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, last_ms INTEGER NOT NULL,
        chan_mask INTEGER NOT NULL, inbound_count INTEGER NOT NULL,
        failed_count INTEGER NOT NULL, search TEXT NOT NULL, search_head TEXT NOT NULL,
        doc TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS portal_summaries_member
        ON portal_summaries (member_id, last_ms DESC, conversation_id DESC);
    CREATE TABLE IF NOT EXISTS portal_index (id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL);
    """,
)


def _ts(at: datetime) -> float:
    return at.timestamp()


def _mask(channels: Sequence[str]) -> int:
    out = 0
    for channel in channels:
        out |= CHANNEL_BITS.get(channel, 0)
    return out


def split_cursor(cursor: str | None) -> tuple[int, str] | None:
    """``"<ms>:<conversation id>"`` → its parts; None for no (or a mangled) cursor."""
    if not cursor:
        return None
    ms, _, conv = cursor.partition(":")
    if not ms.isdigit() or not conv:
        return None
    return int(ms), conv


def make_cursor(summary: Summary) -> str:
    """The cursor that continues after ``summary``."""
    return f"{int(summary.last_at.timestamp() * 1000)}:{summary.conversation_id}"


class SqlitePortalStore:
    """The portal's tables in the store's SQLite file."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, engine: Engine) -> SqlitePortalStore:
        """The role on ``engine``, its tables created or migrated."""
        await engine.migrate("portal", STEPS)
        return cls(engine)

    @property
    def _db(self) -> sqlite3.Connection:
        return self.engine.conn

    # -- accounts -----------------------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace the member's account (emails are unique)."""
        account.email = account.email.casefold()

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT member_id FROM portal_accounts WHERE email = ?", (account.email,)
            ).fetchone()
            if row and row[0] != account.member_id:
                raise Conflict(
                    f"{account.email} already signs in to the portal for another member",
                    code="email_taken",
                )
            db.execute(
                "INSERT INTO portal_accounts VALUES (?, ?, ?, ?, ?) ON CONFLICT (member_id) "
                "DO UPDATE SET email = excluded.email, doc = excluded.doc",
                (
                    account.member_id,
                    account.team_id,
                    account.email,
                    _ts(account.created_at),
                    jsoncodec.dumps(account.to_dict()),
                ),
            )

        await self.engine.write(work)

    async def get_account(self, member_id: str) -> Account | None:
        """The member's account, or None."""
        row = self._db.execute(
            "SELECT doc FROM portal_accounts WHERE member_id = ?", (member_id,)
        ).fetchone()
        return Account.from_dict(jsoncodec.loads(row[0])) if row else None

    async def account_by_email(self, email: str) -> Account | None:
        """The account with this email, or None."""
        row = self._db.execute(
            "SELECT doc FROM portal_accounts WHERE email = ?", (email.strip().casefold(),)
        ).fetchone()
        return Account.from_dict(jsoncodec.loads(row[0])) if row else None

    async def list_accounts(self, team_id: str) -> list[Account]:
        """The team's accounts, oldest first."""
        rows = self._db.execute(
            "SELECT doc FROM portal_accounts WHERE team_id = ? ORDER BY created, member_id",
            (team_id,),
        ).fetchall()
        return [Account.from_dict(jsoncodec.loads(r[0])) for r in rows]

    async def _update_account(
        self,
        member_id: str,
        change: dict[str, Any],
        end: bool,
        if_job: str | None = None,
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT doc FROM portal_accounts WHERE member_id = ?", (member_id,)
            ).fetchone()
            if row is None:
                return False
            doc = jsoncodec.loads(row[0])
            if if_job is not None and (doc.get("invitation") or {}).get("job") != if_job:
                return False
            doc.update(change)
            db.execute(
                "UPDATE portal_accounts SET doc = ? WHERE member_id = ?",
                (jsoncodec.dumps(doc), member_id),
            )
            if end:
                db.execute("DELETE FROM portal_sessions WHERE member_id = ?", (member_id,))
            return True

        return await self.engine.write(work)

    async def set_password(self, member_id: str, password_hash: str, now: datetime) -> bool:
        """New hash; every session of the member ends."""
        change = {"password_hash": password_hash, "password_changed_at": iso(now)}
        return await self._update_account(member_id, change, end=True)

    async def set_role(self, member_id: str, role: str) -> bool:
        """Change the member's role."""
        return await self._update_account(member_id, {"role": role}, end=False)

    async def set_invitation(
        self, member_id: str, invitation: Invitation, *, if_job: str | None = None
    ) -> bool:
        """Record the latest invitation's state (see the protocol)."""
        change = {"invitation": invitation.to_dict()}
        return await self._update_account(member_id, change, end=False, if_job=if_job)

    # -- sessions -----------------------------------------------------------------------
    async def create_session(self, session: Session, replaces: str | None = None) -> None:
        """Store the session; the one it replaces ends (and long-expired ones go)."""

        def work(db: sqlite3.Connection) -> None:
            if replaces:
                db.execute("DELETE FROM portal_sessions WHERE id = ?", (replaces,))
            db.execute("DELETE FROM portal_sessions WHERE expires < ?", (_ts(session.created_at),))
            db.execute(
                "INSERT INTO portal_sessions VALUES (?, ?, ?, ?)",
                (
                    session.id,
                    session.member_id,
                    _ts(session.expires_at),
                    jsoncodec.dumps(session.to_dict()),
                ),
            )

        await self.engine.write(work)

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None."""
        row = self._db.execute(
            "SELECT doc FROM portal_sessions WHERE id = ?", (session_id,)
        ).fetchone()
        return Session.from_dict(jsoncodec.loads(row[0])) if row else None

    async def touch_session(self, session_id: str, now: datetime) -> None:
        """Record activity."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT doc FROM portal_sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                return
            doc = jsoncodec.loads(row[0])
            doc["last_seen_at"] = iso(now)
            db.execute(
                "UPDATE portal_sessions SET doc = ? WHERE id = ?",
                (jsoncodec.dumps(doc), session_id),
            )

        await self.engine.write(work)

    async def end_session(self, session_id: str) -> None:
        """End one session."""
        await self.engine.write(
            lambda db: db.execute("DELETE FROM portal_sessions WHERE id = ?", (session_id,))
        )

    async def end_sessions(self, member_id: str) -> int:
        """End every session of the member."""

        def work(db: sqlite3.Connection) -> int:
            cur = db.execute("DELETE FROM portal_sessions WHERE member_id = ?", (member_id,))
            return int(cur.rowcount)

        return await self.engine.write(work)

    # -- sign-in throttling ---------------------------------------------------------------
    async def note_failure(self, keys: Sequence[str], now: datetime, window_s: int) -> None:
        """One failure under each key; older than the window are dropped."""
        at = _ts(now)

        def work(db: sqlite3.Connection) -> None:
            for key in keys:
                db.execute(
                    "DELETE FROM portal_failures WHERE key = ? AND at <= ?", (key, at - window_s)
                )
                db.execute("INSERT INTO portal_failures VALUES (?, ?)", (key, at))

        await self.engine.write(work)

    async def failures(
        self, keys: Sequence[str], now: datetime, window_s: int
    ) -> dict[str, tuple[int, datetime | None]]:
        """Failures per key within the window, and the oldest."""
        since = _ts(now) - window_s
        out: dict[str, tuple[int, datetime | None]] = {}
        for key in keys:
            count, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(at) FROM portal_failures WHERE key = ? AND at > ?",
                (key, since),
            ).fetchone()
            first = datetime.fromtimestamp(oldest, now.tzinfo) if oldest is not None else None
            out[key] = (int(count), first)
        return out

    async def clear_failures(self, key: str) -> None:
        """Forget the key's failures."""
        await self.engine.write(
            lambda db: db.execute("DELETE FROM portal_failures WHERE key = ?", (key,))
        )

    # -- invitations ------------------------------------------------------------------------
    async def create_invite(
        self, token_hash: str, member_id: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a one-time invitation."""
        await self.engine.write(
            lambda db: db.execute(
                "INSERT INTO portal_invites VALUES (?, ?, ?)",
                (token_hash, member_id, _ts(expires_at)),
            )
        )

    async def take_invite(self, token_hash: str, now: datetime) -> str | None:
        """Use the invitation (once)."""

        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT member_id, expires FROM portal_invites WHERE token = ?", (token_hash,)
            ).fetchone()
            db.execute(
                "DELETE FROM portal_invites WHERE token = ? OR expires < ?", (token_hash, _ts(now))
            )
            if row is None or row[1] <= _ts(now):
                return None
            return str(row[0])

        return await self.engine.write(work)

    async def peek_invite(self, token_hash: str, now: datetime) -> str | None:
        """The invitation's member, if it is still valid."""
        row = self._db.execute(
            "SELECT member_id FROM portal_invites WHERE token = ? AND expires > ?",
            (token_hash, _ts(now)),
        ).fetchone()
        return str(row[0]) if row else None

    # -- drafts and read state ----------------------------------------------------------------
    async def put_draft(self, draft: Draft) -> None:
        """Keep (or, when empty, drop) the draft."""

        def work(db: sqlite3.Connection) -> None:
            if not draft.text:
                db.execute(
                    "DELETE FROM portal_drafts WHERE member_id = ? AND conversation_id = ?",
                    (draft.member_id, draft.conversation_id),
                )
                return
            db.execute(
                "INSERT INTO portal_drafts VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (member_id, conversation_id) DO UPDATE SET text = excluded.text, "
                "channel = excluded.channel, updated_at = excluded.updated_at",
                (
                    draft.member_id,
                    draft.conversation_id,
                    draft.text,
                    draft.channel,
                    iso(draft.updated_at),
                ),
            )

        await self.engine.write(work)

    async def get_draft(self, member_id: str, conversation_id: str) -> Draft | None:
        """The draft, or None."""
        row = self._db.execute(
            "SELECT text, channel, updated_at FROM portal_drafts "
            "WHERE member_id = ? AND conversation_id = ?",
            (member_id, conversation_id),
        ).fetchone()
        if row is None:
            return None
        return Draft(member_id, conversation_id, row[0], row[1], parse_iso(row[2]))

    async def mark_read(self, member_id: str, conversation_id: str) -> None:
        """Everything received so far is seen."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO portal_reads SELECT ?, ?, COALESCE("
                "(SELECT inbound_count FROM portal_summaries WHERE conversation_id = ?), 0) "
                "WHERE true ON CONFLICT (member_id, conversation_id) "
                "DO UPDATE SET read_count = MAX(read_count, excluded.read_count)",
                (member_id, conversation_id, conversation_id),
            )

        await self.engine.write(work)

    # -- the inbox index -----------------------------------------------------------------------
    async def index_cursor(self) -> int:
        """The last event seq applied."""
        row = self._db.execute("SELECT seq FROM portal_index WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    async def apply_index(self, after_seq: int, new_seq: int, changes: list[IndexChange]) -> bool:
        """Apply ``changes`` if the cursor is still ``after_seq``."""

        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT seq FROM portal_index WHERE id = 1").fetchone()
            if (int(row[0]) if row else 0) != after_seq:
                return False
            for change in changes:
                self._apply(db, change)
            db.execute(
                "INSERT INTO portal_index VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = ?",
                (new_seq, new_seq),
            )
            return True

        return await self.engine.write(work)

    @staticmethod
    def _apply(db: sqlite3.Connection, change: IndexChange) -> None:
        row = db.execute(
            "SELECT doc, search, search_head FROM portal_summaries WHERE conversation_id = ?",
            (change.conversation_id,),
        ).fetchone()
        before = Summary.from_dict(jsoncodec.loads(row[0])) if row else None
        texts = row[1] if row else ""
        head = row[2] if row else ""
        summary = merge_change(before, change)
        if change.search_text:
            texts = (texts + " " + change.search_text)[-SEARCH_KEEP:]
        if change.search_head and (not head or change.contact_name):
            head = change.search_head
        db.execute(
            "INSERT INTO portal_summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (conversation_id) DO UPDATE SET last_ms = excluded.last_ms, "
            "chan_mask = excluded.chan_mask, inbound_count = excluded.inbound_count, "
            "failed_count = excluded.failed_count, search = excluded.search, "
            "search_head = excluded.search_head, doc = excluded.doc",
            (
                summary.conversation_id,
                summary.member_id,
                int(summary.last_at.timestamp() * 1000),
                _mask(summary.channels),
                summary.inbound_count,
                len(summary.failed),
                texts,
                head,
                jsoncodec.dumps(summary.to_dict()),
            ),
        )

    async def get_summary(self, conversation_id: str, member_id: str) -> Summary | None:
        """The summary with the member's read state."""
        row = self._db.execute(
            "SELECT s.doc, COALESCE(r.read_count, 0) FROM portal_summaries s "
            "LEFT JOIN portal_reads r ON r.member_id = ? AND r.conversation_id = s.conversation_id "
            "WHERE s.conversation_id = ?",
            (member_id, conversation_id),
        ).fetchone()
        return Summary.from_dict(jsoncodec.loads(row[0]), int(row[1])) if row else None

    async def list_inbox(self, query: InboxQuery, cursor: str | None, limit: int) -> InboxPage:
        """One page of the member's conversations."""
        where = ["s.member_id = ?"]
        args: list[Any] = [query.member_id]
        if query.channel:
            where.append("(s.chan_mask & ?) != 0")
            args.append(CHANNEL_BITS.get(query.channel, 0))
        if query.unread:
            where.append("s.inbound_count > COALESCE(r.read_count, 0)")
        if query.failed:
            where.append("s.failed_count > 0")
        if query.search:
            where.append("(instr(s.search_head, ?) > 0 OR instr(s.search, ?) > 0)")
            args += [query.search, query.search]
        after = split_cursor(cursor)
        if after is not None:
            where.append("(s.last_ms < ? OR (s.last_ms = ? AND s.conversation_id < ?))")
            args += [after[0], after[0], after[1]]
        rows = self._db.execute(
            "SELECT s.doc, COALESCE(r.read_count, 0) FROM portal_summaries s "
            "LEFT JOIN portal_reads r ON r.member_id = s.member_id "
            "AND r.conversation_id = s.conversation_id "
            f"WHERE {' AND '.join(where)} "
            "ORDER BY s.last_ms DESC, s.conversation_id DESC LIMIT ?",
            (*args, limit + 1),
        ).fetchall()
        items = [Summary.from_dict(jsoncodec.loads(doc), int(read)) for doc, read in rows]
        more = len(items) > limit
        items = items[:limit]
        return InboxPage(items, make_cursor(items[-1]) if more and items else None)

    async def unread_total(self, member_id: str) -> int:
        """Conversations with something unread."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM portal_summaries s LEFT JOIN portal_reads r "
            "ON r.member_id = s.member_id AND r.conversation_id = s.conversation_id "
            "WHERE s.member_id = ? AND s.inbound_count > COALESCE(r.read_count, 0)",
            (member_id,),
        ).fetchone()
        return int(row[0])

    async def clear_failed(self, conversation_id: str, message_id: str) -> None:
        """The message no longer marks the conversation as failed."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT doc FROM portal_summaries WHERE conversation_id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                return
            doc = jsoncodec.loads(row[0])
            failed = [m for m in doc.get("failed") or [] if m != message_id]
            doc["failed"] = failed
            db.execute(
                "UPDATE portal_summaries SET doc = ?, failed_count = ? WHERE conversation_id = ?",
                (jsoncodec.dumps(doc), len(failed), conversation_id),
            )

        await self.engine.write(work)
