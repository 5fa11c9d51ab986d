"""The webhooks' storage on SQLite: tables beside the core's in the store's file.

Every call goes through the store's ``Engine`` (``gateway/store/sqlite_engine.py``): reads
on its connection, writes with ``Engine.write``, so a webhook write shares the transaction
and the group commit of the core's writes in the same loop ticks. The tables are created
(and later migrated) by ``Engine.migrate("webhooks", SCHEMA_STEPS)`` when the role opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway import jsoncodec
from gateway.errors import Conflict
from gateway.jsoncodec import dumps
from gateway.models import from_ms, to_ms
from gateway.store.base import Page
from gateway.store.sqlite_engine import Engine
from webhooks.models import (
    DELIVERY_PENDING,
    WEBHOOK_LOG_KEEP,
    Delivery,
    DeliveryOutcome,
    FinishResult,
    WebhookEndpoint,
)

# A delivery's changing state lives in columns (a lease or a finish is one UPDATE), its
# fixed fields in ``doc``; only lane heads and leases have a ``due_ms`` (one partial index
# serves due attempts and expired leases), and the lane index covers pending rows only.
_SCHEMA_1 = """
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
# Released steps never change: a new schema is a step appended (see Engine.migrate). The
# first one adopts the tables that the core's schema created before the webhooks owned them.
# 2: finished deliveries by age, for retention (``prune_deliveries``).
_SCHEMA_2 = """
CREATE INDEX IF NOT EXISTS webhook_deliveries_finished ON webhook_deliveries (updated_ms)
    WHERE status != 'pending';
"""
SCHEMA_STEPS = (_SCHEMA_1, _SCHEMA_2)
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
        dumps(d.last_attempt) if d.last_attempt else None,
        to_ms(d.updated_at or d.created_at),
        dumps(d.static_doc()),
    )


class SqliteWebhookStore:
    """``WebhookStore`` on the SQLite store's ``Engine``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, engine: Engine) -> SqliteWebhookStore:
        """The role on ``engine``, its tables created or migrated."""
        await engine.migrate("webhooks", SCHEMA_STEPS)
        return cls(engine)

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._engine.conn

    @staticmethod
    def _bump_version(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO webhook_state VALUES ('version', 1, NULL, NULL) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1"
        )

    async def create_endpoint(self, endpoint: WebhookEndpoint, max_per_team: int) -> None:
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
                (
                    endpoint.id,
                    endpoint.team_id,
                    endpoint.version,
                    dumps(endpoint.to_dict()),
                ),
            )
            self._bump_version(db)

        return await self._engine.write(work)

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint, or None."""
        row = self._conn.execute(
            "SELECT doc, failing_ms FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        ).fetchone()
        return _webhook_endpoint(row) if row else None

    async def list_endpoints(self, team_id: str | None) -> list[WebhookEndpoint]:
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

    async def update_endpoint(self, endpoint: WebhookEndpoint, reset_failing: bool = False) -> bool:
        """Replace the endpoint if its stored version is the one before ``endpoint``'s."""

        def work(db: sqlite3.Connection) -> bool:
            reset = ", failing_ms = NULL" if reset_failing else ""
            cur = db.execute(
                f"UPDATE webhook_endpoints SET version = ?, doc = ?{reset} "
                "WHERE id = ? AND version = ?",
                (
                    endpoint.version,
                    dumps(endpoint.to_dict()),
                    endpoint.id,
                    endpoint.version - 1,
                ),
            )
            if cur.rowcount == 0:
                return False
            self._bump_version(db)
            return True

        return await self._engine.write(work)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
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
            self._bump_version(db)
            return True

        return await self._engine.write(work)

    async def prune_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` deliveries finished before ``before``, with their
        attempts (one short write, by the index of finished deliveries)."""

        def work(db: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM webhook_deliveries WHERE status != 'pending' "
                    "AND updated_ms < ? ORDER BY updated_ms LIMIT ?",
                    (to_ms(before), limit),
                )
            ]
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            db.execute(f"DELETE FROM webhook_attempts WHERE delivery_id IN ({marks})", ids)
            db.execute(f"DELETE FROM webhook_deliveries WHERE id IN ({marks})", ids)
            return len(ids)

        return await self._engine.write(work)

    async def endpoints_version(self) -> int:
        """The endpoints' change counter."""
        row = self._conn.execute(
            "SELECT value FROM webhook_state WHERE name = 'version'"
        ).fetchone()
        return int(row[0]) if row else 0

    async def lease_fanout(self, owner: str, now: datetime, ttl: timedelta) -> int | None:
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

        return await self._engine.write(work)

    async def fanout(
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

        return await self._engine.write(work)

    async def lease_deliveries(
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

        return await self._engine.write(work)

    async def finish_delivery(
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
            record = dumps(outcome.attempt)
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

        return await self._engine.write(work)

    async def requeue_deliveries(
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

        return await self._engine.write(work)

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
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

    async def list_deliveries(
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
