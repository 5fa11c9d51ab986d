"""The embedded default store: one SQLite file in WAL mode.

Calls run on the event loop thread: each is a few index lookups and costs microseconds,
far less than a hop to a thread pool. Writes go through ``sqlite_engine.Engine``: the
writes of two consecutive loop ticks share one ``BEGIN IMMEDIATE`` transaction and one
COMMIT (so several processes — ``gateway serve`` plus ``gateway worker`` — can share one
file), and sends, the hot path, are written in bulk by ``submit_batch``. Reads on this
connection may see writes of the current ticks that are not yet committed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from gateway import jsoncodec
from gateway.errors import Conflict, CreditLimitExceeded, Forbidden
from gateway.ids import new_id
from gateway.models import (
    ApiKey,
    Attachment,
    Charge,
    Conversation,
    Event,
    Job,
    LedgerLine,
    Member,
    Message,
    StatusChange,
    Team,
    from_ms,
    iso,
    to_ms,
)
from gateway.store.base import (
    IDEM_KEEP,
    IdemRecord,
    Limit,
    MessageFilter,
    Page,
    Reroute,
    StatusUpdate,
    crossed_thresholds,
    ledger_overage_micros,
)
from gateway.store.rules import (
    apply_reroute,
    apply_update,
    can_reroute,
    event_doc,
    status_event,
    threshold_event,
)
from gateway.store.sqlite_batch import (
    Send,
    encode,
    message_row,
    submit_batch,
)
from gateway.store.sqlite_engine import Engine
from gateway.store.sqlite_jobs import SCHEMA as JOBS_SCHEMA
from gateway.store.sqlite_jobs import SqliteJobs
from gateway.store.sqlite_rates import SCHEMA as RATES_SCHEMA

# Tables keyed by text are WITHOUT ROWID (one b-tree instead of a table plus its key
# index), logs use plain INTEGER PRIMARY KEY (no AUTOINCREMENT bookkeeping; rows are
# never deleted, so keys are never reused), and the job indexes are partial: a send
# writes as few pages as its data needs. A conversation's activity times live in
# columns only, so touching it is one UPDATE without re-encoding its document.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, active INTEGER NOT NULL, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_team ON members (team_id, id);
CREATE TABLE IF NOT EXISTS numbers (
    number TEXT PRIMARY KEY, member_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attachments (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (scope TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, member_id TEXT NOT NULL,
    member_number TEXT NOT NULL, remote_number TEXT NOT NULL, last_ms INTEGER NOT NULL,
    wa_ms INTEGER, doc TEXT NOT NULL, UNIQUE (team_id, member_number, remote_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_recent ON conversations (team_id, last_ms, id);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, member_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL, channel TEXT NOT NULL, direction TEXT NOT NULL,
    status TEXT NOT NULL, first_status TEXT NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_team ON messages (team_id, id);
CREATE INDEX IF NOT EXISTS messages_member ON messages (member_id, id);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation_id, id);
CREATE TABLE IF NOT EXISTS carrier_ids (
    connector_id TEXT NOT NULL, carrier_id TEXT NOT NULL, message_id TEXT NOT NULL,
    PRIMARY KEY (connector_id, carrier_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbound_dedupe (
    dedupe_key TEXT PRIMARY KEY, message_id TEXT NOT NULL) WITHOUT ROWID;
-- A message's first status (at created_at) is its first_status column; this table holds
-- the changes after it.
CREATE TABLE IF NOT EXISTS status_history (
    n INTEGER PRIMARY KEY, message_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS status_history_message ON status_history (message_id, n);
CREATE TABLE IF NOT EXISTS ledger (
    team_id TEXT NOT NULL, period TEXT NOT NULL, member_id TEXT NOT NULL, channel TEXT NOT NULL,
    used INTEGER NOT NULL, included INTEGER NOT NULL, price_micros INTEGER NOT NULL,
    PRIMARY KEY (team_id, period, member_id, channel)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_team (
    team_id TEXT NOT NULL, period TEXT NOT NULL, overage_micros INTEGER NOT NULL,
    PRIMARY KEY (team_id, period)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, run_ms INTEGER NOT NULL,
    lease_ms INTEGER, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (run_ms) WHERE state = 'ready';
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_ms) WHERE state = 'leased';
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, doc TEXT NOT NULL);
-- While a claim is pending (status_code NULL), body holds its ref (IdemRecord.ref).
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status_code INTEGER,
    body TEXT, expires_ms INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_ms);
"""

T = TypeVar("T")


_CONV_COLUMNS = "doc, last_ms, wa_ms"


def _conversation(row: tuple[Any, ...]) -> Conversation:
    """A conversation from ``doc, last_ms, wa_ms`` (its activity times live in columns)."""
    conv = Conversation.from_dict(jsoncodec.loads(row[0]))
    conv.last_message_at = from_ms(row[1])
    conv.last_inbound_whatsapp_at = None if row[2] is None else from_ms(row[2])
    return conv


def _cursor_parts(cursor: str) -> tuple[int, str]:
    ms, _, ident = cursor.partition(":")
    return int(ms), ident


class SqliteStore(SqliteJobs):
    """Store backend on one SQLite file (``sqlite:///path`` or ``sqlite:///:memory:``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        # sqlite:///abs/path → /abs/path; sqlite://rel/path → rel/path
        path = url.removeprefix("sqlite://")
        self.path = ":memory:" if path in (":memory:", "/:memory:") else path
        self._engine = Engine(self.path)

    # -- plumbing --------------------------------------------------------------------
    async def open(self) -> None:
        """Open the file (creating directories and schema)."""
        # Send limits: see sqlite_rates; the parked jobs' index: sqlite_jobs.
        self._engine.open(_SCHEMA + RATES_SCHEMA + JOBS_SCHEMA)

    async def aclose(self) -> None:
        """Close the database (committing a transaction still open)."""
        self._engine.close()

    async def ping(self) -> None:
        """Raise if the database cannot answer."""
        self._conn.execute("SELECT 1").fetchone()

    @property
    def engine(self) -> Engine:
        """The connection with its group commit. Public on purpose: the SQLite
        implementations of extensions' storage roles (``roles.py``) read and write through
        it, so their writes share the core's transactions and commits."""
        return self._engine

    # ``_conn`` (reads) and ``_write(work)`` (the engine's write): see SqliteJobs.
    def _doc(self, sql: str, *args: Any) -> dict[str, Any] | None:
        row = self._conn.execute(sql, args).fetchone()
        return jsoncodec.loads(row[0]) if row else None

    # -- directory -------------------------------------------------------------------
    async def create_team(self, team: Team) -> None:
        """Store a new team."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO teams VALUES (?, ?)", (team.id, encode(team.to_dict())))

        return await self._write(work)

    async def get_team(self, team_id: str) -> Team | None:
        """The team, or None."""
        doc = self._doc("SELECT doc FROM teams WHERE id = ?", team_id)
        return Team.from_dict(doc) if doc else None

    async def list_teams(self) -> list[Team]:
        """Every team, oldest first."""
        rows = self._conn.execute("SELECT doc FROM teams ORDER BY id").fetchall()
        return [Team.from_dict(jsoncodec.loads(r[0])) for r in rows]

    async def create_member(self, member: Member, max_active: int) -> None:
        """Store a new member, refusing a full plan or a number owned by someone else."""

        def work(db: sqlite3.Connection) -> None:
            if member.active:
                (active,) = db.execute(
                    "SELECT COUNT(*) FROM members WHERE team_id = ? AND active = 1",
                    (member.team_id,),
                ).fetchone()
                if active >= max_active:
                    raise Forbidden(
                        f"the team's plan allows at most {max_active} active members",
                        code="plan_limit",
                    )
            for number in member.numbers():
                if db.execute("SELECT 1 FROM numbers WHERE number = ?", (number,)).fetchone():
                    raise Conflict(f"{number} already belongs to a member", code="number_taken")
            db.execute(
                "INSERT INTO members VALUES (?, ?, ?, ?)",
                (member.id, member.team_id, int(member.active), encode(member.to_dict())),
            )
            db.executemany(
                "INSERT INTO numbers VALUES (?, ?)", [(n, member.id) for n in member.numbers()]
            )

        return await self._write(work)

    async def get_member(self, member_id: str) -> Member | None:
        """The member, or None."""
        doc = self._doc("SELECT doc FROM members WHERE id = ?", member_id)
        return Member.from_dict(doc) if doc else None

    async def list_members(self, team_id: str) -> list[Member]:
        """The team's members, oldest first."""
        rows = self._conn.execute(
            "SELECT doc FROM members WHERE team_id = ? ORDER BY id", (team_id,)
        ).fetchall()
        return [Member.from_dict(jsoncodec.loads(r[0])) for r in rows]

    async def member_by_number(self, number: str) -> Member | None:
        """The member who owns ``number``, or None."""
        doc = self._doc(
            "SELECT m.doc FROM numbers n JOIN members m ON m.id = n.member_id WHERE n.number = ?",
            number,
        )
        return Member.from_dict(doc) if doc else None

    async def set_member_active(
        self, member_id: str, active: bool, max_active: int
    ) -> Member | None:
        """Activate or deactivate the member (activation within the plan's cap)."""

        def work(db: sqlite3.Connection) -> Member | None:
            row = db.execute("SELECT doc FROM members WHERE id = ?", (member_id,)).fetchone()
            if row is None:
                return None
            member = Member.from_dict(jsoncodec.loads(row[0]))
            if active and not member.active:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM members WHERE team_id = ? AND active = 1",
                    (member.team_id,),
                ).fetchone()
                if count >= max_active:
                    raise Forbidden(
                        f"the team's plan allows at most {max_active} active members",
                        code="plan_limit",
                    )
            member.active = active
            db.execute(
                "UPDATE members SET active = ?, doc = ? WHERE id = ?",
                (int(active), encode(member.to_dict()), member_id),
            )
            return member

        return await self._write(work)

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO api_keys VALUES (?, ?)", (key.key_hash, encode(key.to_dict())))

        return await self._write(work)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The API key with this hash, or None."""
        doc = self._doc("SELECT doc FROM api_keys WHERE key_hash = ?", key_hash)
        return ApiKey.from_dict(doc) if doc else None

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """The team's API keys, oldest first (few per team: read from the documents)."""
        rows = self._conn.execute(
            "SELECT doc FROM api_keys WHERE json_extract(doc, '$.team_id') = ?", (team_id,)
        ).fetchall()
        keys = [ApiKey.from_dict(jsoncodec.loads(r[0])) for r in rows]
        return sorted(keys, key=lambda k: k.id)

    async def delete_api_key(self, team_id: str, key_id: str) -> bool:
        """Revoke the team's key."""

        def work(db: sqlite3.Connection) -> bool:
            cur = db.execute(
                "DELETE FROM api_keys WHERE json_extract(doc, '$.team_id') = ? "
                "AND json_extract(doc, '$.id') = ?",
                (team_id, key_id),
            )
            return cur.rowcount > 0

        return await self._write(work)

    # -- attachments -----------------------------------------------------------------
    async def put_attachment(self, attachment: Attachment) -> None:
        """Store attachment metadata."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO attachments VALUES (?, ?)",
                (attachment.id, encode(attachment.to_dict())),
            )

        return await self._write(work)

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The attachment, or None."""
        doc = self._doc("SELECT doc FROM attachments WHERE id = ?", attachment_id)
        return Attachment.from_dict(doc) if doc else None

    # -- settings documents ------------------------------------------------------------
    async def get_setting(self, scope: str) -> dict[str, Any] | None:
        """The settings document stored under ``scope``, or None."""
        return self._doc("SELECT doc FROM settings WHERE scope = ?", scope)

    async def put_setting(self, scope: str, doc: dict[str, Any]) -> None:
        """Store (replace) the settings document under ``scope``."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (scope, encode(doc)))

        return await self._write(work)

    # -- conversations ---------------------------------------------------------------
    async def conversation_for(
        self, team_id: str, member_id: str, member_number: str, remote_number: str, now: datetime
    ) -> Conversation:
        """The conversation of the triple, created if new."""
        sql = (
            f"SELECT {_CONV_COLUMNS} FROM conversations WHERE team_id = ? AND member_number = ? "
            "AND remote_number = ?"
        )
        args = (team_id, member_number, remote_number)
        row = self._conn.execute(sql, args).fetchone()
        if row:
            return _conversation(row)

        def work(db: sqlite3.Connection) -> Conversation:
            row = db.execute(sql, args).fetchone()
            if row:
                return _conversation(row)
            conv = Conversation(
                id=new_id("conv"),
                team_id=team_id,
                member_id=member_id,
                member_number=member_number,
                remote_number=remote_number,
                created_at=now,
                last_message_at=now,
            )
            db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                (
                    conv.id,
                    team_id,
                    member_id,
                    member_number,
                    remote_number,
                    to_ms(now),
                    encode(conv.to_dict()),
                ),
            )
            return conv

        return await self._write(work)

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""
        row = self._conn.execute(
            f"SELECT {_CONV_COLUMNS} FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        return _conversation(row) if row else None

    async def find_conversation(
        self, team_id: str, member_number: str, remote_number: str
    ) -> Conversation | None:
        """The conversation of the triple as stored now, or None (never created here)."""
        row = self._conn.execute(
            f"SELECT {_CONV_COLUMNS} FROM conversations WHERE team_id = ? AND member_number = ? "
            "AND remote_number = ?",
            (team_id, member_number, remote_number),
        ).fetchone()
        return _conversation(row) if row else None

    async def list_conversations(
        self, team_id: str, member_id: str | None, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        """Conversations by latest activity, newest first."""
        sql = f"SELECT {_CONV_COLUMNS}, id FROM conversations WHERE team_id = ?"
        args: list[Any] = [team_id]
        if member_id:
            sql += " AND member_id = ?"
            args.append(member_id)
        if cursor:
            ms, ident = _cursor_parts(cursor)
            sql += " AND (last_ms < ? OR (last_ms = ? AND id < ?))"
            args += [ms, ms, ident]
        sql += " ORDER BY last_ms DESC, id DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._conn.execute(sql, args).fetchall()
        items = [_conversation(r) for r in rows[:limit]]
        nxt = f"{rows[limit - 1][1]}:{rows[limit - 1][3]}" if len(rows) > limit else None
        return Page(items, nxt)

    def _touch_conversation(
        self, db: sqlite3.Connection, conversation_id: str, at: datetime, inbound_whatsapp: bool
    ) -> None:
        if inbound_whatsapp:
            db.execute(
                "UPDATE conversations SET last_ms = MAX(last_ms, ?1), "
                "wa_ms = MAX(COALESCE(wa_ms, ?1), ?1) WHERE id = ?2",
                (to_ms(at), conversation_id),
            )
        else:
            db.execute(
                "UPDATE conversations SET last_ms = ?1 WHERE id = ?2 AND last_ms < ?1",
                (to_ms(at), conversation_id),
            )

    # -- messages --------------------------------------------------------------------
    def _insert_message(self, db: sqlite3.Connection, m: Message) -> None:
        db.execute("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", message_row(m))

    def _append(self, db: sqlite3.Connection, events: list[Event]) -> list[Event]:
        for ev in events:
            cur = db.execute("INSERT INTO events (doc) VALUES (?)", (event_doc(ev),))
            ev.seq = int(cur.lastrowid or 0)
        return events

    def _add_overage(
        self, db: sqlite3.Connection, team_id: str, period: str, cost: int
    ) -> tuple[int]:
        row: tuple[int] = db.execute(
            "INSERT INTO ledger_team VALUES (?1, ?2, MAX(0, ?3)) ON CONFLICT (team_id, period) "
            "DO UPDATE SET overage_micros = MAX(0, overage_micros + ?3) "
            "RETURNING overage_micros",
            (team_id, period, cost),
        ).fetchone()
        return row

    def _release(self, db: sqlite3.Connection, msg: Message) -> None:
        """Give ``msg.units`` back to the ledger line they were charged to."""
        row = db.execute(
            "SELECT used, included, price_micros FROM ledger WHERE team_id = ? AND period = ? "
            "AND member_id = ? AND channel = ?",
            (msg.team_id, msg.charged_period, msg.member_id, msg.channel),
        ).fetchone()
        if row is None:
            return
        before, included, price = row
        after = max(0, before - msg.units)
        db.execute(
            "UPDATE ledger SET used = ? WHERE team_id = ? AND period = ? AND member_id = ? "
            "AND channel = ?",
            (after, msg.team_id, msg.charged_period, msg.member_id, msg.channel),
        )
        cost = ledger_overage_micros(after, included, price) - ledger_overage_micros(
            before, included, price
        )
        if cost:
            self._add_overage(db, msg.team_id, msg.charged_period or "", cost)

    async def submit_outbound(
        self,
        message: Message,
        charge: Charge | None,
        job: Job,
        events: list[Event],
        limits: Sequence[Limit] = (),
    ) -> list[Event]:
        """Take the limits' slots, book the charge, insert the message, enqueue the job,
        append events: all or none.

        The hot path: the sends of one commit are written together by ``submit_batch``,
        limits included (``sqlite_rates``), in the commit's one transaction.
        """
        result: list[Event] = await self._engine.batched(
            submit_batch, Send(message, charge, job, list(events), limits)
        )
        return result

    async def store_inbound(
        self,
        message: Message,
        dedupe_key: str,
        events: list[Event],
        jobs: Sequence[Job] = (),
    ) -> tuple[Message, bool]:
        """Store an inbound message (and enqueue ``jobs``) unless its dedupe key was seen."""

        def work(db: sqlite3.Connection) -> tuple[Message, bool]:
            row = db.execute(
                "SELECT m.doc FROM inbound_dedupe d JOIN messages m ON m.id = d.message_id "
                "WHERE d.dedupe_key = ?",
                (dedupe_key,),
            ).fetchone()
            if row:
                return Message.from_dict(jsoncodec.loads(row[0])), False
            db.execute("INSERT INTO inbound_dedupe VALUES (?, ?)", (dedupe_key, message.id))
            self._insert_message(db, message)
            self._touch_conversation(
                db, message.conversation_id, message.created_at, message.channel == "whatsapp"
            )
            self._append(db, events)
            for job in jobs:
                self._insert_job(db, job)
            return message, True

        return await self._write(work)

    async def get_message(self, message_id: str) -> Message | None:
        """The message, or None."""
        doc = self._doc("SELECT doc FROM messages WHERE id = ?", message_id)
        return Message.from_dict(doc) if doc else None

    async def list_messages(
        self, flt: MessageFilter, cursor: str | None, limit: int
    ) -> Page[Message]:
        """Messages matching the filter, newest first."""
        clauses, args = ["team_id = ?"], [flt.team_id]
        for column in ("member_id", "conversation_id", "channel", "direction", "status"):
            value = getattr(flt, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if cursor:
            clauses.append("id < ?")
            args.append(cursor)
        # Pick the narrowest index; SQLite's planner does not always see it alone.
        index = (
            "messages_conversation"
            if flt.conversation_id
            else "messages_member"
            if flt.member_id
            else "messages_team"
        )
        sql = (
            f"SELECT doc FROM messages INDEXED BY {index} WHERE {' AND '.join(clauses)} "
            "ORDER BY id DESC LIMIT ?"
        )
        rows = self._conn.execute(sql, [*args, limit + 1]).fetchall()
        items = [Message.from_dict(jsoncodec.loads(r[0])) for r in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def update_message(
        self, message_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Apply a status update atomically (forward only)."""

        def work(db: sqlite3.Connection) -> tuple[Message, bool] | None:
            return self._update_message(db, message_id, update, now)

        return await self._write(work)

    def _update_message(
        self, db: sqlite3.Connection, message_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        row = db.execute("SELECT doc FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        return self._apply(db, Message.from_dict(jsoncodec.loads(row[0])), update, now)

    def _apply(
        self, db: sqlite3.Connection, msg: Message, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool]:
        """Apply ``update`` to ``msg`` as read in this transaction, and write it."""
        changed = apply_update(msg, update, now)
        if update.carrier_id and msg.connector_id:
            db.executemany(
                "INSERT OR REPLACE INTO carrier_ids VALUES (?, ?, ?)",
                [(msg.connector_id, c, msg.id) for c in (update.carrier_id, *update.part_ids)],
            )
        if update.release and msg.charged_period:
            self._release(db, msg)
            msg.charged_period = None
        db.execute(
            "UPDATE messages SET status = ?, doc = ? WHERE id = ?",
            (msg.status, encode(msg.to_dict()), msg.id),
        )
        if changed:
            change = StatusChange(msg.id, msg.status, now, update.detail)
            db.execute(
                "INSERT INTO status_history (message_id, doc) VALUES (?, ?)",
                (msg.id, encode(change.to_dict())),
            )
            self._append(db, [status_event(msg, now)])
        return msg, changed

    # -- the send and receipt paths: one write each -------------------------------------
    async def complete_send(
        self, message_id: str, update: StatusUpdate, job_id: str, token: str, now: datetime
    ) -> tuple[Message, bool] | None:
        """Apply ``update`` to the message and ack the job, in one transaction."""

        def work(db: sqlite3.Connection) -> tuple[Message, bool] | None:
            result = self._update_message(db, message_id, update, now)
            # json_extract compares the lease token without decoding the job in Python.
            db.execute(
                "DELETE FROM jobs WHERE id = ? AND state IN ('leased', 'parked') "
                "AND json_extract(doc, '$.token') = ?",
                (job_id, token),
            )
            return result

        return await self._write(work)

    async def update_by_carrier_id(
        self, connector_id: str, carrier_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Find the message by its carrier id and apply ``update``, in one write; the
        reports of one loop tick are applied together (``_reports_batch``)."""
        result: tuple[Message, bool] | None = await self._engine.batched(
            self._reports_batch, (connector_id, carrier_id, update, now)
        )
        return result

    def _reports_batch(
        self,
        db: sqlite3.Connection,
        items: list[tuple[str, str, StatusUpdate, datetime]],
    ) -> list[object]:
        """The ``Engine.batched`` runner of ``update_by_carrier_id``: in order, so two
        reports about one message (its parts) build on each other; each in a savepoint of
        its own, so one that fails (an unreadable document) fails alone."""
        out: list[object] = []
        for connector_id, carrier_id, update, now in items:
            db.execute("SAVEPOINT r")
            try:
                out.append(self._report(db, connector_id, carrier_id, update, now))
            except Exception as exc:
                db.execute("ROLLBACK TO r")
                out.append(exc)
            db.execute("RELEASE r")
        return out

    def _report(
        self,
        db: sqlite3.Connection,
        connector_id: str,
        carrier_id: str,
        update: StatusUpdate,
        now: datetime,
    ) -> tuple[Message, bool] | None:
        row = db.execute(
            "SELECT m.doc FROM carrier_ids c JOIN messages m ON m.id = c.message_id "
            "WHERE c.connector_id = ? AND c.carrier_id = ?",
            (connector_id, carrier_id),
        ).fetchone()
        if row is None:
            return None
        msg = Message.from_dict(jsoncodec.loads(row[0]))
        if msg.connector_id != connector_id:  # about an earlier attempt (rerouted since)
            return msg, False
        return self._apply(db, msg, update, now)

    # -- end of the send and receipt paths ----------------------------------------------
    async def message_by_carrier_id(self, connector_id: str, carrier_id: str) -> Message | None:
        """The message a carrier knows by ``carrier_id``."""
        doc = self._doc(
            "SELECT m.doc FROM carrier_ids c JOIN messages m ON m.id = c.message_id "
            "WHERE c.connector_id = ? AND c.carrier_id = ?",
            connector_id,
            carrier_id,
        )
        return Message.from_dict(doc) if doc else None

    def _charge(self, db: sqlite3.Connection, charge: Charge, at: datetime) -> list[Event]:
        """Book ``charge`` alone (``submit_batch`` books sends in bulk); refused past the
        team's credit limit. Returns the threshold events it crosses."""
        key = (charge.team_id, charge.period, charge.member_id, charge.channel)
        row = db.execute(
            "SELECT used FROM ledger WHERE team_id = ? AND period = ? AND member_id = ? "
            "AND channel = ?",
            key,
        ).fetchone()
        before = row[0] if row else 0
        after = before + charge.units
        included, price = charge.included, charge.overage_price_micros
        cost = ledger_overage_micros(after, included, price) - ledger_overage_micros(
            before, included, price
        )
        trow = db.execute(
            "SELECT overage_micros FROM ledger_team WHERE team_id = ? AND period = ?",
            (charge.team_id, charge.period),
        ).fetchone()
        overage = trow[0] if trow else 0
        if cost > 0 and overage + cost > charge.credit_limit_micros:
            raise CreditLimitExceeded(
                "this send would take the team's overage past its credit limit",
                overage_micros=overage,
                cost_micros=cost,
                credit_limit_micros=charge.credit_limit_micros,
            )
        db.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (team_id, period, "
            "member_id, channel) DO UPDATE SET used = excluded.used, "
            "included = excluded.included, price_micros = excluded.price_micros",
            (*key, after, included, price),
        )
        if cost:
            self._add_overage(db, charge.team_id, charge.period, cost)
        crossed = crossed_thresholds(before, after, included, charge.thresholds)
        return [threshold_event(charge, pct, after, at) for pct in crossed]

    async def reroute_message(
        self, message_id: str, reroute: Reroute, charge: Charge, job: Job | None, now: datetime
    ) -> tuple[Message, bool] | None:
        """Move a message to another channel: release, charge, requeue — all or none."""

        def work(db: sqlite3.Connection) -> tuple[Message, bool] | None:
            row = db.execute("SELECT doc FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return None
            msg = Message.from_dict(jsoncodec.loads(row[0]))
            if not can_reroute(msg, reroute):
                return msg, False
            if msg.charged_period:
                self._release(db, msg)
            # Refused past the credit limit: the write's savepoint undoes the release too.
            thresholds = self._charge(db, charge, now)
            apply_reroute(msg, reroute, charge.period, now)
            db.execute(
                "UPDATE messages SET channel = ?, status = ?, doc = ? WHERE id = ?",
                (msg.channel, msg.status, encode(msg.to_dict()), msg.id),
            )
            change = StatusChange(msg.id, msg.status, now, reroute.detail)
            db.execute(
                "INSERT INTO status_history (message_id, doc) VALUES (?, ?)",
                (msg.id, encode(change.to_dict())),
            )
            self._append(db, [status_event(msg, now), *thresholds])
            if job is not None:
                self._insert_job(db, job)
            return msg, True

        return await self._write(work)

    async def status_history(self, message_id: str) -> list[StatusChange]:
        """The message's status changes, oldest first."""
        first = self._conn.execute(
            "SELECT first_status, doc FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if first is None:
            return []
        created = Message.from_dict(jsoncodec.loads(first[1])).created_at
        rows = self._conn.execute(
            "SELECT doc FROM status_history WHERE message_id = ? ORDER BY n", (message_id,)
        ).fetchall()
        return [StatusChange(message_id, first[0], created)] + [
            StatusChange.from_dict(jsoncodec.loads(r[0])) for r in rows
        ]

    # -- quota ledger ----------------------------------------------------------------
    async def ledger(self, team_id: str, period: str) -> tuple[list[LedgerLine], int]:
        """Units used per member and channel, and the team's overage cost."""
        rows = self._conn.execute(
            "SELECT member_id, channel, used FROM ledger WHERE team_id = ? AND period = ? "
            "ORDER BY member_id, channel",
            (team_id, period),
        ).fetchall()
        trow = self._conn.execute(
            "SELECT overage_micros FROM ledger_team WHERE team_id = ? AND period = ?",
            (team_id, period),
        ).fetchone()
        lines = [LedgerLine(r[0], r[1], period, r[2]) for r in rows]
        return lines, (trow[0] if trow else 0)

    # -- jobs: see sqlite_jobs.SqliteJobs ----------------------------------------------
    # -- events ----------------------------------------------------------------------
    async def append_events(self, events: list[Event]) -> list[Event]:
        """Append events and number them."""

        def work(db: sqlite3.Connection) -> list[Event]:
            return self._append(db, events)

        return await self._write(work)

    async def list_events(self, after_seq: int, limit: int) -> list[Event]:
        """Events after ``after_seq``, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, doc FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        out = []
        for seq, doc in rows:
            ev = Event.from_dict(jsoncodec.loads(doc))
            ev.seq = seq
            out.append(ev)
        return out

    async def prune_events(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events created before ``before`` (one
        short write: the oldest ``limit`` rows by key)."""
        cutoff = iso(before)

        def work(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "SELECT seq, json_extract(doc, '$.created_at') FROM events ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            last = None
            for seq, at in rows:
                if at >= cutoff:
                    break
                last = seq
            if last is None:
                return 0
            return db.execute("DELETE FROM events WHERE seq <= ?", (last,)).rowcount

        return await self._write(work)

    async def events_at(self, seqs: Sequence[int]) -> list[Event]:
        """The events with these seqs, in seq order."""
        wanted = sorted(set(seqs))
        out = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for seq, doc in self._conn.execute(
                f"SELECT seq, doc FROM events WHERE seq IN ({marks}) ORDER BY seq", chunk
            ):
                ev = Event.from_dict(jsoncodec.loads(doc))
                ev.seq = seq
                out.append(ev)
        return out

    # -- idempotency -----------------------------------------------------------------
    async def idem_claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        ttl: timedelta,
        ref: str | None = None,
    ) -> IdemRecord | None:
        """Claim an idempotency key (with ``ref``), or return the record that holds it."""

        def work(db: sqlite3.Connection) -> IdemRecord | None:
            row = db.execute(
                "SELECT fingerprint, status_code, body, expires_ms FROM idempotency "
                "WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row and row[3] > to_ms(now):
                if row[1] is None:  # pending: body is the claim's ref
                    return IdemRecord(row[0], None, None, row[2])
                return IdemRecord(row[0], row[1], row[2])
            db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, NULL, ?, ?)",
                (scope, key, fingerprint, ref, to_ms(now + ttl)),
            )
            return None

        return await self._write(work)

    async def idem_complete(
        self,
        scope: str,
        key: str,
        status_code: int,
        body: str,
        now: datetime,
        keep: timedelta = IDEM_KEEP,
    ) -> None:
        """Store the response for a claimed key (kept for ``keep``)."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE idempotency SET status_code = ?, body = ?, expires_ms = ? "
                "WHERE scope = ? AND key = ?",
                (status_code, body, to_ms(now + keep), scope, key),
            )

        return await self._write(work)

    async def prune_idempotency(self, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` expired records (one short write, by the expiry index)."""

        def work(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key FROM "
                "idempotency WHERE expires_ms <= ? ORDER BY expires_ms LIMIT ?)",
                (to_ms(now), limit),
            ).rowcount

        return await self._write(work)

    async def idem_release(self, scope: str, key: str) -> None:
        """Drop a claim."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM idempotency WHERE scope = ? AND key = ?", (scope, key))

        return await self._write(work)
