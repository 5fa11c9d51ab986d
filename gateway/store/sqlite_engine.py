"""The SQLite connection of one process: group commit, batched work, background checkpoints.

The writes of two consecutive event-loop ticks share ONE transaction and ONE commit:

* ``write(work)`` runs ``work`` at once inside a savepoint of its own (an error undoes that
  write only) and returns after the shared COMMIT;
* ``batched(runner, item)`` queues ``item``; just before the COMMIT, ``runner`` handles all
  items queued for this commit in one go (bulk statements instead of one per item) and says
  per item what its caller gets — a value or an error — which is handed out after COMMIT.

A caller therefore never sees success before its data is durable. Writes wait for another
connection's lock (another process) with ``asyncio.sleep``, never blocking the loop, and
WAL checkpoints (the part of durability that copies and fsyncs) run in a thread.

Public on purpose: the SQLite implementations of extensions' storage roles
(``gateway/store/roles.py``) get the store's ``Engine``, create their tables with
:meth:`Engine.migrate`, read on :attr:`Engine.conn` and write with :meth:`Engine.write` and
:meth:`Engine.batched`, so their writes share the core's transactions and commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 (an item of a batch)
LOCK_WAIT = 30.0  # seconds a writer waits for another connection's write lock
# A batch runner gets the connection and the items of one commit, and returns for each
# item what its caller receives: a value, or an exception to raise.
Runner = Callable[[sqlite3.Connection, list[Any]], list[Any]]


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


def _statements(script: str) -> list[str]:
    """The SQL statements of ``script`` (a ``;`` inside a string or a trigger stays put)."""
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [statement for statement in out if statement != ";"]


class _Checkpointer(threading.Thread):
    """Moves the WAL into the database file every ``interval`` seconds (PASSIVE: it
    never blocks writers or readers), on a connection of its own."""

    def __init__(self, path: str, interval: float = 0.5) -> None:
        super().__init__(name=f"sqlite-checkpoint:{path}", daemon=True)
        self.path = path
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Checkpoint until stopped (sqlite3 releases the GIL while it works)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop_event.wait(self.interval):
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            db.close()

    def stop(self) -> None:
        """Stop after one last checkpoint."""
        self._stop_event.set()
        self.join(timeout=10)


class Engine:
    """One connection in WAL mode with group commit; see the module docstring."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        # Futures of this tick's writes with what to settle them with after COMMIT;
        # None while no transaction is open.
        self._pending: list[tuple[asyncio.Future[Any], Any, BaseException | None]] | None = None
        self._batches: dict[Runner, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._checkpointer: _Checkpointer | None = None
        self._committed: asyncio.Future[None] | None = None  # see committed()

    def committed(self) -> asyncio.Future[None]:
        """A future done at the next COMMIT (what waiters on the event log wait for)."""
        if self._committed is None or self._committed.done():
            self._committed = asyncio.get_running_loop().create_future()
        return self._committed

    def open(self, schema: str) -> None:
        """Open the file (creating its directory and the schema)."""
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=LOCK_WAIT
        )
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable against process crashes (the WAL is written
        # before commit returns); only an OS crash can lose the last transactions.
        db.execute("PRAGMA synchronous=NORMAL")
        # Every write runs in a savepoint, whose undo copies (the statement journal) went
        # to a new temporary file per transaction: a create, an unlink and ~10 KB of
        # writes per send. They only undo a savepoint inside a live transaction (crash
        # recovery is the WAL's job), so memory is the right place for them.
        db.execute("PRAGMA temp_store=MEMORY")
        db.executescript(schema)
        # From now on a busy lock fails at once; writers wait in _begin, off the loop.
        db.execute("PRAGMA busy_timeout=0")
        self._db = db
        if self.path != ":memory:":
            db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = _Checkpointer(self.path)
            self._checkpointer.start()

    def close(self) -> None:
        """Commit what is still open, stop checkpoints, close the connection."""
        if self._pending is not None:
            self._commit()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection (reads may run on it at any time)."""
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` now in this tick's transaction; return its result after COMMIT."""
        db = self.conn
        pending = await self._transaction()
        db.execute("SAVEPOINT w")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK TO w")
            db.execute("RELEASE w")
            raise
        db.execute("RELEASE w")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.append((done, None, None))
        await done
        return result

    async def migrate(self, name: str, steps: Sequence[str]) -> None:
        """Bring the tables of ``name`` (an extension, e.g. ``"webhooks"``) up to date.

        ``steps`` are SQL scripts, run in order and each once per database: how many ran
        is kept in the table ``schema_steps``, and the ones after that run together in one
        write (all or none; other processes wait for it). A released step never changes: a
        new schema is a step appended (``ALTER TABLE …``). Steps written with ``IF NOT
        EXISTS`` also adopt tables that an earlier version of the gateway created; a
        database a newer version migrated further is left as it is.
        """

        def work(db: sqlite3.Connection) -> None:
            # Statement by statement inside the write: executescript() would first COMMIT
            # the transaction that this tick's other writes share.
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_steps "
                "(name TEXT PRIMARY KEY, done INTEGER NOT NULL) WITHOUT ROWID"
            )
            row = db.execute("SELECT done FROM schema_steps WHERE name = ?", (name,)).fetchone()
            done = int(row[0]) if row else 0
            if done >= len(steps):
                return
            for step in steps[done:]:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(
                "INSERT INTO schema_steps VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET done = excluded.done",
                (name, len(steps)),
            )

        await self.write(work)

    async def batched(self, runner: Runner, item: Any) -> Any:
        """Queue ``item`` for ``runner`` at this tick's COMMIT; return what it decides."""
        await self._transaction()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batches.setdefault(runner, []).append((item, done))
        return await done

    async def _transaction(self) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """This tick's open transaction, opened (without blocking the loop) if needed.

        ``busy_timeout`` is 0, so a lock held by another connection (another process, or
        another store in this one) fails at once; waiting with ``asyncio.sleep`` lets this
        loop go on, including the commit that may be the one holding the lock.
        """
        delay, waited = 0.0005, 0.0
        while self._pending is None:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or waited > LOCK_WAIT:
                    raise
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 0.02)
                continue
            self._pending = []
            # The COMMIT runs a tick later than it could: the requests the server read
            # meanwhile reach this transaction first. Under load that doubles the sends
            # per commit (a commit writes every page it touched to the WAL, so its cost
            # hardly depends on how many sends share it); idle, a tick is microseconds.
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._commit)
        return self._pending

    def _run_batches(self) -> None:
        assert self._pending is not None
        db = self.conn
        while self._batches:
            runner, entries = self._batches.popitem()
            items = [item for item, _ in entries]
            db.execute("SAVEPOINT b")
            try:
                outcomes = runner(db, items)
            except Exception as exc:
                db.execute("ROLLBACK TO b")
                db.execute("RELEASE b")
                self._pending += [(done, None, exc) for _, done in entries]
                continue
            db.execute("RELEASE b")
            for (_, done), outcome in zip(entries, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    self._pending.append((done, None, outcome))
                else:
                    self._pending.append((done, outcome, None))

    def _commit(self) -> None:
        if self._pending is None:
            return
        self._run_batches()
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _busy(exc):  # a reader is checkpointing: try again in a moment
                asyncio.get_running_loop().call_later(0.001, self._commit)
                return
            self._fail(exc)
            return
        except Exception as exc:
            self._fail(exc)
            return
        pending, self._pending = self._pending, None
        committed, self._committed = self._committed, None
        if committed is not None and not committed.done():
            committed.set_result(None)
        for done, value, error in pending:
            if done.done():
                continue
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(value)

    def _fail(self, exc: Exception) -> None:
        pending, self._pending = self._pending or [], None
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("ROLLBACK")
        for done, _, _ in pending:
            if not done.done():
                done.set_exception(exc)
