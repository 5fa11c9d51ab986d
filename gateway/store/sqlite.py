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
)
from gateway.store.base import (
    DELIVERY_PENDING,
    WEBHOOK_LOG_KEEP,
    Delivery,
    DeliveryOutcome,
    FinishResult,
    IdemRecord,
    Limit,
    MessageFilter,
    Page,
    Reroute,
    StatusUpdate,
    WebhookEndpoint,
    crossed_thresholds,
    ledger_overage_micros,
)
from gateway.store.rules import (
    apply_reroute,
    apply_update,
    can_reroute,
    event_doc,
    from_ms,
    status_event,
    threshold_event,
    to_ms,
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
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status_code INTEGER,
    body TEXT, expires_ms INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;
"""

IDEM_KEEP = timedelta(hours=24)
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
        self._engine.open(_SCHEMA + RATES_SCHEMA + JOBS_SCHEMA + _WEBHOOK_SCHEMA)

    async def aclose(self) -> None:
        """Close the database (committing a transaction still open)."""
        self._engine.close()

    async def ping(self) -> None:
        """Raise if the database cannot answer."""
        self._conn.execute("SELECT 1").fetchone()

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

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO api_keys VALUES (?, ?)", (key.key_hash, encode(key.to_dict())))

        return await self._write(work)

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The API key with this hash, or None."""
        doc = self._doc("SELECT doc FROM api_keys WHERE key_hash = ?", key_hash)
        return ApiKey.from_dict(doc) if doc else None

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

    # -- idempotency -----------------------------------------------------------------
    async def idem_claim(
        self, scope: str, key: str, fingerprint: str, now: datetime, ttl: timedelta
    ) -> IdemRecord | None:
        """Claim an idempotency key, or return the record that holds it."""

        def work(db: sqlite3.Connection) -> IdemRecord | None:
            row = db.execute(
                "SELECT fingerprint, status_code, body, expires_ms FROM idempotency "
                "WHERE scope = ? AND key = ?",
                (scope, key),
            ).fetchone()
            if row and row[3] > to_ms(now):
                return IdemRecord(row[0], row[1], row[2])
            db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, NULL, NULL, ?)",
                (scope, key, fingerprint, to_ms(now + ttl)),
            )
            return None

        return await self._write(work)

    async def idem_complete(
        self, scope: str, key: str, status_code: int, body: str, now: datetime
    ) -> None:
        """Store the response for a claimed key (kept for 24 hours)."""

        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE idempotency SET status_code = ?, body = ?, expires_ms = ? "
                "WHERE scope = ? AND key = ?",
                (status_code, body, to_ms(now + IDEM_KEEP), scope, key),
            )

        return await self._write(work)

    async def idem_release(self, scope: str, key: str) -> None:
        """Drop a claim."""

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM idempotency WHERE scope = ? AND key = ?", (scope, key))

        return await self._write(work)

    # -- webhooks (tables: _WEBHOOK_SCHEMA below) -------------------------------------------
    def _bump_webhook_version(self, db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO webhook_state VALUES ('version', 1, NULL, NULL) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1"
        )

    async def create_webhook_endpoint(self, endpoint: WebhookEndpoint, max_per_team: int) -> None:
        """Store a new endpoint unless the team has ``max_per_team`` already."""

        def work(db: sqlite3.Connection) -> None:
            (count,) = db.execute(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE team_id = ?", (endpoint.team_id,)
            ).fetchone()
            if count >= max_per_team:
                raise Conflict(
                    f"the team already has {max_per_team} webhook endpoints, the most it may",
                    code="webhook_endpoint_limit",
                )
            db.execute(
                "INSERT INTO webhook_endpoints VALUES (?, ?, ?, NULL, ?)",
                (endpoint.id, endpoint.team_id, endpoint.version, encode(endpoint.to_dict())),
            )
            self._bump_webhook_version(db)

        return await self._write(work)

    async def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint, or None."""
        row = self._conn.execute(
            "SELECT doc, failing_ms FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        return _webhook_endpoint(row) if row else None

    async def list_webhook_endpoints(self, team_id: str | None) -> list[WebhookEndpoint]:
        """The team's (or every) endpoint, oldest first."""
        if team_id is None:
            rows = self._conn.execute(
                "SELECT doc, failing_ms FROM webhook_endpoints ORDER BY id"
            ).fetchall()
        else:
            rows = self._conn.execute(
                "SELECT doc, failing_ms FROM webhook_endpoints WHERE team_id = ? ORDER BY id",
                (team_id,),
            ).fetchall()
        return [_webhook_endpoint(r) for r in rows]

    async def update_webhook_endpoint(
        self, endpoint: WebhookEndpoint, reset_failing: bool = False
    ) -> bool:
        """Replace the endpoint if its stored version is the one before ``endpoint``'s."""

        def work(db: sqlite3.Connection) -> bool:
            reset = ", failing_ms = NULL" if reset_failing else ""
            cur = db.execute(
                f"UPDATE webhook_endpoints SET version = ?, doc = ?{reset} "
                "WHERE id = ? AND version = ?",
                (endpoint.version, encode(endpoint.to_dict()), endpoint.id, endpoint.version - 1),
            )
            if cur.rowcount == 0:
                return False
            self._bump_webhook_version(db)
            return True

        return await self._write(work)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its deliveries."""

        def work(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
            if gone.rowcount == 0:
                return False
            db.execute(
                "DELETE FROM webhook_attempts WHERE delivery_id IN "
                "(SELECT id FROM webhook_deliveries WHERE endpoint_id = ?)",
                (endpoint_id,),
            )
            db.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
            self._bump_webhook_version(db)
            return True

        return await self._write(work)

    async def webhook_endpoints_version(self) -> int:
        """The endpoints' change counter."""
        row = self._conn.execute(
            "SELECT value FROM webhook_state WHERE name = 'version'"
        ).fetchone()
        return int(row[0]) if row else 0

    async def lease_webhook_fanout(self, owner: str, now: datetime, ttl: timedelta) -> int | None:
        """Take or renew the fan-out lease; the cursor, or None while another holds it."""
        now_ms = to_ms(now)

        def held(row: tuple[Any, ...] | None) -> bool:
            return row is not None and row[1] not in (None, owner) and row[2] > now_ms

        sql = "SELECT value, owner, lease_ms FROM webhook_state WHERE name = 'cursor'"
        if held(self._conn.execute(sql).fetchone()):
            return None

        def work(db: sqlite3.Connection) -> int | None:
            row = db.execute(sql).fetchone()
            if held(row):
                return None
            value = int(row[0]) if row else 0
            db.execute(
                "INSERT INTO webhook_state VALUES ('cursor', ?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET owner = excluded.owner, lease_ms = excluded.lease_ms",
                (value, owner, to_ms(now + ttl)),
            )
            return value

        return await self._write(work)

    async def webhook_fanout(
        self,
        after_seq: int,
        new_seq: int,
        endpoints_version: int,
        deliveries: Sequence[Delivery],
        token: str,
        lease_until: datetime,
        lease_limit: int,
        now: datetime,
    ) -> list[Delivery] | None:
        """Advance the cursor and add deliveries, leasing the new lane heads."""

        def work(db: sqlite3.Connection) -> list[Delivery] | None:
            state = dict(
                db.execute(
                    "SELECT name, value FROM webhook_state WHERE name IN ('cursor', 'version')"
                ).fetchall()
            )
            if state.get("cursor", 0) != after_seq or state.get("version", 0) != endpoints_version:
                return None
            db.execute(
                "INSERT INTO webhook_state VALUES ('cursor', ?, NULL, NULL) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (new_seq,),
            )
            leased: list[Delivery] = []
            for d in deliveries:
                if db.execute("SELECT 1 FROM webhook_deliveries WHERE id = ?", (d.id,)).fetchone():
                    continue
                head = d.lane == d.id or not db.execute(_LANE_BUSY, (d.lane,)).fetchone()
                d.status, d.attempts, d.token, d.due_at = DELIVERY_PENDING, 0, None, None
                d.last_attempt, d.updated_at = None, now
                if head and len(leased) < lease_limit:
                    d.attempts, d.token, d.due_at = 1, token, lease_until
                    leased.append(d)
                elif head:
                    d.due_at = now
                db.execute(
                    "INSERT INTO webhook_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _delivery_row(d),
                )
            return leased

        return await self._write(work)

    async def lease_webhook_deliveries(
        self, now: datetime, token: str, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries."""
        now_ms = to_ms(now)
        due = "FROM webhook_deliveries WHERE due_ms <= ?"
        if limit < 1 or not self._conn.execute(f"SELECT 1 {due} LIMIT 1", (now_ms,)).fetchone():
            return []

        def work(db: sqlite3.Connection) -> list[Delivery]:
            rows = db.execute(
                f"SELECT {_DELIVERY_COLUMNS} {due} ORDER BY due_ms LIMIT ?", (now_ms, limit)
            ).fetchall()
            out = []
            for row in rows:
                d = _delivery(row)
                d.attempts += 1
                d.token, d.due_at, d.updated_at = token, lease_until, now
                db.execute(
                    "UPDATE webhook_deliveries SET attempts = ?, token = ?, due_ms = ?, "
                    "updated_ms = ? WHERE id = ?",
                    (d.attempts, token, to_ms(lease_until), to_ms(now), d.id),
                )
                out.append(d)
            return out

        return await self._write(work)

    async def finish_webhook_delivery(
        self, delivery: Delivery, outcome: DeliveryOutcome, now: datetime
    ) -> FinishResult | None:
        """Record an attempt of a leased delivery; promote its lane's next on a final one."""
        now_ms = to_ms(now)

        def work(db: sqlite3.Connection) -> FinishResult | None:
            row = db.execute(
                "SELECT token, lane FROM webhook_deliveries WHERE id = ?", (delivery.id,)
            ).fetchone()
            if row is None or row[0] is None or row[0] != delivery.token:
                return None
            lane = row[1]
            pending = outcome.status == DELIVERY_PENDING
            due = to_ms(outcome.retry_at) if pending and outcome.retry_at else None
            record = encode(outcome.attempt)
            db.execute(
                "UPDATE webhook_deliveries SET status = ?, due_ms = ?, token = NULL, last = ?, "
                "updated_ms = ? WHERE id = ?",
                (outcome.status, now_ms if pending and due is None else due, record, now_ms,
                 delivery.id),
            )  # fmt: skip
            db.execute(
                "INSERT INTO webhook_attempts (delivery_id, doc) VALUES (?, ?)",
                (delivery.id, record),
            )
            if delivery.attempts > 1 or delivery.last_attempt is not None:  # else: log empty
                db.execute(
                    "DELETE FROM webhook_attempts WHERE delivery_id = ? AND n <= (SELECT n FROM "
                    "webhook_attempts WHERE delivery_id = ? ORDER BY n DESC LIMIT 1 OFFSET ?)",
                    (delivery.id, delivery.id, WEBHOOK_LOG_KEEP),
                )
            promoted = None
            if not pending and lane != delivery.id:
                nxt = db.execute(
                    "SELECT id, due_ms FROM webhook_deliveries WHERE lane = ? "
                    "AND status = 'pending' ORDER BY seq LIMIT 1",
                    (lane,),
                ).fetchone()
                if nxt is not None and nxt[1] is None:
                    db.execute(
                        "UPDATE webhook_deliveries SET due_ms = ?, updated_ms = ? WHERE id = ?",
                        (now_ms, now_ms, nxt[0]),
                    )
                    promoted = nxt[0]
            if outcome.endpoint_ok is True:
                db.execute(
                    "UPDATE webhook_endpoints SET failing_ms = NULL "
                    "WHERE id = ? AND failing_ms IS NOT NULL",
                    (delivery.endpoint_id,),
                )
            elif outcome.endpoint_ok is False:
                db.execute(
                    "UPDATE webhook_endpoints SET failing_ms = ? "
                    "WHERE id = ? AND failing_ms IS NULL",
                    (now_ms, delivery.endpoint_id),
                )
            frow = db.execute(
                "SELECT failing_ms FROM webhook_endpoints WHERE id = ?", (delivery.endpoint_id,)
            ).fetchone()
            failing = from_ms(frow[0]) if frow and frow[0] is not None else None
            return FinishResult(failing, promoted)

        return await self._write(work)

    async def requeue_webhook_deliveries(
        self, deliveries: Sequence[Delivery], now: datetime
    ) -> list[Delivery]:
        """Send deliveries again, each in no lane (see the protocol)."""
        now_ms = to_ms(now)

        def work(db: sqlite3.Connection) -> list[Delivery]:
            out = []
            for d in deliveries:
                row = db.execute(
                    f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?", (d.id,)
                ).fetchone()
                if row is None:
                    d.lane, d.status, d.attempts, d.due_at = d.id, DELIVERY_PENDING, 0, now
                    d.token, d.last_attempt, d.updated_at = None, None, now
                    db.execute(
                        "INSERT INTO webhook_deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        _delivery_row(d),
                    )
                    out.append(d)
                    continue
                cur = _delivery(row)
                if cur.status != DELIVERY_PENDING:
                    cur.lane, cur.status, cur.attempts = cur.id, DELIVERY_PENDING, 0
                    cur.due_at = now
                elif cur.token is None and cur.due_at is not None:
                    cur.due_at = now
                else:
                    out.append(cur)  # in flight, or held back in its lane
                    continue
                cur.updated_at = now
                db.execute(
                    "UPDATE webhook_deliveries SET lane = ?, status = ?, attempts = ?, due_ms = ?, "
                    "updated_ms = ? WHERE id = ?",
                    (cur.lane, cur.status, cur.attempts, now_ms, now_ms, cur.id),
                )
                out.append(cur)
            return out

        return await self._write(work)

    async def get_webhook_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with its attempt log."""
        row = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?", (delivery_id,)
        ).fetchone()
        if row is None:
            return None
        d = _delivery(row)
        d.log = [
            jsoncodec.loads(r[0])
            for r in self._conn.execute(
                "SELECT doc FROM webhook_attempts WHERE delivery_id = ? ORDER BY n", (delivery_id,)
            )
        ]
        return d

    async def list_webhook_deliveries(
        self, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """The endpoint's deliveries, newest event first (cursor: the last seq returned)."""
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = ?"
        args: list[Any] = [endpoint_id]
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if cursor:
            sql += " AND seq < ?"
            args.append(int(cursor))
        rows = self._conn.execute(f"{sql} ORDER BY seq DESC LIMIT ?", [*args, limit + 1]).fetchall()
        items = [_delivery(r) for r in rows[:limit]]
        return Page(items, str(items[-1].seq) if len(rows) > limit else None)

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


# A delivery's changing state lives in columns (a lease or a finish is one UPDATE), its
# fixed fields in ``doc``; only lane heads and leases have a ``due_ms`` (one partial index
# serves due attempts and expired leases), and the lane index covers pending rows only.
_WEBHOOK_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL, version INTEGER NOT NULL, failing_ms INTEGER,
    doc TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_endpoints_team ON webhook_endpoints (team_id, id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY, endpoint_id TEXT NOT NULL, seq INTEGER NOT NULL, lane TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, due_ms INTEGER, token TEXT, last TEXT,
    updated_ms INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (due_ms)
    WHERE due_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS webhook_deliveries_lane ON webhook_deliveries (lane, seq)
    WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS webhook_attempts (
    n INTEGER PRIMARY KEY, delivery_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_attempts_delivery ON webhook_attempts (delivery_id, n);
CREATE TABLE IF NOT EXISTS webhook_state (
    name TEXT PRIMARY KEY, value INTEGER NOT NULL, owner TEXT, lease_ms INTEGER) WITHOUT ROWID;
"""
_DELIVERY_COLUMNS = "doc, lane, status, attempts, due_ms, token, last, updated_ms"
_LANE_BUSY = "SELECT 1 FROM webhook_deliveries WHERE lane = ? AND status = 'pending' LIMIT 1"


def _webhook_endpoint(row: tuple[Any, ...]) -> WebhookEndpoint:
    """An endpoint from ``doc, failing_ms``."""
    failing = from_ms(row[1]) if row[1] is not None else None
    return WebhookEndpoint.from_dict(jsoncodec.loads(row[0]), failing)


def _delivery(row: tuple[Any, ...]) -> Delivery:
    """A delivery from the ``_DELIVERY_COLUMNS``."""
    d = Delivery.from_static(jsoncodec.loads(row[0]), row[1])
    d.status, d.attempts, d.token = row[2], row[3], row[5]
    d.due_at = from_ms(row[4]) if row[4] is not None else None
    d.last_attempt = jsoncodec.loads(row[6]) if row[6] else None
    d.updated_at = from_ms(row[7])
    return d


def _delivery_row(d: Delivery) -> tuple[Any, ...]:
    """The columns of a new delivery row."""
    return (
        d.id,
        d.endpoint_id,
        d.seq,
        d.lane,
        d.status,
        d.attempts,
        to_ms(d.due_at) if d.due_at else None,
        d.token,
        encode(d.last_attempt) if d.last_attempt else None,
        to_ms(d.updated_at or d.created_at),
        encode(d.static_doc()),
    )


# -- end webhooks --------------------------------------------------------------------------
