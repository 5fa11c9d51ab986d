"""The SQLite store's job queue (mixed into ``SqliteStore``).

The ``jobs`` table keeps each job's document with its state, due time and lease end in
columns, found through partial indexes in key order: ``jobs_due`` (ready jobs by
``run_ms``), ``jobs_lease`` (leased jobs by ``lease_ms``) and ``jobs_parked`` (by kind,
then due time). A parked row (``state = 'parked'``, its document unchanged, ``run_ms``
its due time) is a due job a worker set aside because it has no handler for its kind;
a worker that handles the kind leases it from there. The column is the only change:
the document still says ``ready`` (or ``leased``, an expired lease whose holder may
still finish it), and counts and listings show it as ready.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from gateway import jsoncodec
from gateway.coordination import LocalCoordination
from gateway.models import Job, Message, to_ms
from gateway.store.event_waiters import SqliteEventWaiter
from gateway.store.rules import lease_or_bury, schedule_retry
from gateway.store.sqlite_batch import encode, job_row
from gateway.store.sqlite_engine import Engine

# Created with the other tables (``SqliteStore.open``); an index only, so a file written
# before parking existed opens unchanged.
SCHEMA = """
CREATE INDEX IF NOT EXISTS jobs_parked ON jobs (json_extract(doc, '$.kind'), run_ms)
    WHERE state = 'parked';
"""
_SAVE_JOB = "UPDATE jobs SET state = ?, run_ms = ?, lease_ms = ?, doc = ? WHERE id = ?"
_PARK = "UPDATE jobs SET state = 'parked', run_ms = ? WHERE id = ?"
# A leased job whose lease expired may have been parked: its holder still holds it.
_HELD = "SELECT doc FROM jobs WHERE id = ? AND state IN ('leased', 'parked')"
T = TypeVar("T")


def _job_state(job: Job) -> tuple[object, ...]:
    """The ``_SAVE_JOB`` parameters of ``job``."""
    lease_ms = to_ms(job.lease_until) if job.lease_until else None
    return (job.state, to_ms(job.run_at), lease_ms, encode(job.to_dict()), job.id)


_READY = "SELECT run_ms, 0, doc FROM jobs WHERE state = 'ready' AND run_ms <= ?1 ORDER BY run_ms"
_EXPIRED = (
    "SELECT lease_ms, 1, doc FROM jobs WHERE state = 'leased' AND lease_ms <= ?1 ORDER BY lease_ms"
)
_PARKED = "SELECT run_ms, 2, doc FROM jobs WHERE state = 'parked' AND run_ms <= ?1"


@functools.cache
def _due_sql(kinds: int | None) -> str:
    """The one statement of :func:`_due_jobs` for ``kinds`` kinds (None: every kind)."""
    parts = [_READY, _EXPIRED]
    if kinds is None:
        parts.append(_PARKED + " ORDER BY run_ms")
    elif kinds:
        marks = ", ".join(f"?{i}" for i in range(3, 3 + kinds))
        parts.append(f"{_PARKED} AND json_extract(doc, '$.kind') IN ({marks}) ORDER BY run_ms")
    return " UNION ALL ".join(f"SELECT * FROM ({sql} LIMIT ?2)" for sql in parts)


def _due_jobs(
    db: sqlite3.Connection, now_ms: int, limit: int, kinds: Collection[str] | None
) -> list[tuple[int, str]]:
    """``(due ms, doc)`` of up to ``limit`` due jobs, expired leases and parked jobs of
    ``kinds`` (None: every kind), earliest first (on a tie: a ready job, then an expired
    lease, then a parked job, as on Redis).

    One statement, one query per index, each reading its index in order and stopping at
    ``limit``: one ``ORDER BY`` over their union would sort every due row (milliseconds
    with a backlog).
    """
    sql = _due_sql(None if kinds is None else len(kinds))
    rows = db.execute(sql, (now_ms, limit, *(kinds or ()))).fetchall()
    if any(row[1] for row in rows):  # rare: a worker died, or a kind waited for a handler
        rows = sorted(rows, key=lambda row: (int(row[0]), row[1]))[:limit]
    return [(int(row[0]), row[2]) for row in rows]


class SqliteJobs:
    """The job methods of ``SqliteStore``."""

    _engine: Engine

    if TYPE_CHECKING:  # SqliteStore's

        async def get_message(self, message_id: str) -> Message | None: ...

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._engine.conn

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._engine.write(work)

    def _insert_job(self, db: sqlite3.Connection, job: Job) -> None:
        db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?)", job_row(job))

    def _save_job(self, db: sqlite3.Connection, job: Job) -> None:
        db.execute(_SAVE_JOB, _job_state(job))

    def _jobs(self, sql: str, *args: Any) -> list[Job]:
        return [Job.from_dict(jsoncodec.loads(r[0])) for r in self._conn.execute(sql, args)]

    # One process owns a SQLite store: its workers are woken in process (Runtime).
    shared = False

    def ring_job_bell(self) -> None:
        """No other process to wake."""

    async def wait_job_bell(self, timeout: float) -> bool:
        """No ring ever comes: waits ``timeout``."""
        await asyncio.sleep(timeout)
        return False

    def event_waiter(self) -> SqliteEventWaiter:
        """Woken by this process's commits (``event_waiters.py``)."""
        return SqliteEventWaiter(self._engine)

    _coordination: LocalCoordination | None = None

    def coordination(self) -> LocalCoordination:
        """This process's memory: it alone opens the store."""
        if self._coordination is None:
            self._coordination = LocalCoordination()
        return self._coordination

    async def enqueue(self, job: Job) -> None:
        """Add a ready job."""

        def work(db: sqlite3.Connection) -> None:
            self._insert_job(db, job)

        return await self._write(work)

    async def lease_job(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        *,
        kinds: Collection[str] | None = None,
    ) -> Job | None:
        """Lease the earliest due job of ``kinds`` (or one whose lease expired)."""
        jobs = await self.lease_jobs(now, owner, visibility, 1, kinds=kinds)
        return jobs[0] if jobs else None

    async def lease_jobs(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        limit: int,
        *,
        kinds: Collection[str] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs of ``kinds`` (and expired leases), earliest
        first; park due jobs of other kinds on the way."""
        now_ms = to_ms(now)
        # Nothing due (the common answer of an idle worker): no write transaction.
        if limit < 1 or not _due_jobs(self._conn, now_ms, 1, kinds):
            return []

        def work(db: sqlite3.Connection) -> list[Job]:
            leased: list[Job] = []
            # Each round leases, buries or parks every row it read: it ends.
            while len(leased) < limit:
                rows = _due_jobs(db, now_ms, limit - len(leased), kinds)
                if not rows:
                    break
                saves, parks = [], []
                for due_ms, doc in rows:
                    job = Job.from_dict(jsoncodec.loads(doc))
                    if kinds is not None and job.kind not in kinds:
                        parks.append((due_ms, job.id))
                        continue
                    if lease_or_bury(job, now, owner, visibility):
                        leased.append(job)
                    saves.append(_job_state(job))
                db.executemany(_SAVE_JOB, saves)
                db.executemany(_PARK, parks)
            return leased

        return await self._write(work)

    def _held(self, db: sqlite3.Connection, job_id: str, token: str) -> Job | None:
        """The job if ``token`` holds its lease."""
        row = db.execute(_HELD, (job_id,)).fetchone()
        if row is None:
            return None
        job = Job.from_dict(jsoncodec.loads(row[0]))
        return job if job.state == "leased" and job.token == token else None

    async def renew_job(self, job_id: str, token: str, until: datetime) -> bool:
        """Extend the lease ``token`` holds to ``until``."""

        def work(db: sqlite3.Connection) -> bool:
            job = self._held(db, job_id, token)
            if job is None:
                return False
            job.lease_until = until
            self._save_job(db, job)
            return True

        return await self._write(work)

    async def ack_job(self, job_id: str, token: str) -> bool:
        """Remove a finished job if ``token`` still holds its lease."""

        def work(db: sqlite3.Connection) -> bool:
            if self._held(db, job_id, token) is None:
                return False
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return True

        return await self._write(work)

    async def retry_job(
        self, job_id: str, token: str, run_at: datetime, error: str, refund: bool = False
    ) -> str | None:
        """Put a leased job back for ``run_at`` (or bury it after max attempts)."""

        def work(db: sqlite3.Connection) -> str | None:
            job = self._held(db, job_id, token)
            if job is None:
                return None
            schedule_retry(job, run_at, error, refund)
            self._save_job(db, job)
            return job.state

        return await self._write(work)

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None."""
        jobs = self._jobs("SELECT doc FROM jobs WHERE id = ?", job_id)
        return jobs[0] if jobs else None

    async def message_of_job(self, job: Job) -> Message | None:
        """The message ``job`` is about (read now: a read costs no round trip here)."""
        return await self.get_message(str(job.payload.get("message_id")))

    async def list_dead_jobs(self, limit: int) -> list[Job]:
        """Dead jobs, newest first."""
        return self._jobs(
            "SELECT doc FROM jobs WHERE state = 'dead' ORDER BY id DESC LIMIT ?", limit
        )

    async def list_jobs(self, state: str, kind: str | None, limit: int) -> list[Job]:
        """Jobs in ``state`` (parked ones count as ready), of ``kind`` if given."""
        states, order = {
            "ready": ("'ready', 'parked'", "run_ms, id"),
            "leased": ("'leased'", "lease_ms, id"),
            "dead": ("'dead'", "id DESC"),
        }[state]
        where = f"state IN ({states})"
        args: list[object] = []
        if kind is not None:
            where += " AND json_extract(doc, '$.kind') = ?"
            args.append(kind)
        sql = f"SELECT doc FROM jobs WHERE {where} ORDER BY {order} LIMIT ?"
        return self._jobs(sql, *args, limit)

    async def revive_job(self, job_id: str, now: datetime) -> Job | None:
        """Make a dead job ready again, due ``now``, with no attempts used."""

        def work(db: sqlite3.Connection) -> Job | None:
            row = db.execute(
                "SELECT doc FROM jobs WHERE id = ? AND state = 'dead'", (job_id,)
            ).fetchone()
            if row is None:
                return None
            job = Job.from_dict(jsoncodec.loads(row[0]))
            job.state, job.attempts, job.run_at = "ready", 0, now
            job.token = job.lease_until = None
            self._save_job(db, job)
            return job

        return await self._write(work)

    async def job_counts(self) -> dict[str, int]:
        """Jobs per state (parked ones are ready)."""
        counts = {"ready": 0, "leased": 0, "dead": 0}
        for state, n in self._conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            key = "ready" if state == "parked" else state
            counts[key] += n
        return counts

    async def parked_job_counts(self) -> dict[str, int]:
        """Parked jobs by kind."""
        rows = self._conn.execute(
            "SELECT json_extract(doc, '$.kind'), COUNT(*) FROM jobs WHERE state = 'parked' "
            "GROUP BY json_extract(doc, '$.kind')"
        )
        return {str(kind): int(n) for kind, n in rows}
