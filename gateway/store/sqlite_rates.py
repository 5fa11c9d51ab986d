"""Send limits in the SQLite store: exact sliding logs, checked inside the send batch.

``submit_batch`` (``sqlite_batch.py``) runs inside the tick's write transaction, which
holds the database's write lock, so a check and the take that follows it are atomic
against every other process on the file. Per limit key the store keeps:

* ``rate_log``: one row per accepted send still in the window (key, ms, message id);
* ``rate_keys``: the key's row count ``n`` (a check reads it instead of counting), the
  time of its oldest row (expired rows are deleted only when there are some) and when its
  newest row expires (keys nobody sends to any more are dropped then).

A batch reads the ``rate_keys`` rows of all its keys in one statement, keeps them in
memory while it checks and takes, and writes them back with one statement each for the
log rows and the counts. Times are the sends' ``created_at``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.errors import RateLimited
from gateway.store.base import Limit

SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_log (
    key TEXT NOT NULL, ms INTEGER NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (key, ms, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rate_keys (
    key TEXT PRIMARY KEY, n INTEGER NOT NULL, oldest_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rate_keys_expiry ON rate_keys (expires_ms);
"""
_NONE = 2**62  # the oldest time of an empty log
_CHUNK = 500  # keys per SELECT (SQLite allows 32766 parameters; keep statements small)


@dataclass(slots=True)
class _Key:
    """One limit key as this batch sees it."""

    n: int  # sends in the log: stored rows plus ``pending``
    oldest_ms: int
    expires_ms: int
    pending: list[tuple[int, str]] = field(default_factory=list)  # taken in this batch
    touched: bool = False


class RateLog:
    """The limit keys of one send batch: checked and taken in memory, written at the end."""

    def __init__(self, db: sqlite3.Connection, limits: Iterable[Limit]) -> None:
        self.db = db
        self.keys: dict[str, _Key] = {}
        self.now_ms = 0  # the latest send time seen: idle keys expire relative to it
        wanted = list({limit.key: None for limit in limits})
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            rows = db.execute(
                "SELECT key, n, oldest_ms, expires_ms FROM rate_keys WHERE key IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            for key, n, oldest, expires in rows:
                self.keys[key] = _Key(n, oldest, expires)

    def _key(self, limit: Limit, now_ms: int) -> _Key:
        """The key's state with every send at or before ``now - window`` dropped."""
        self.now_ms = max(self.now_ms, now_ms)
        state = self.keys.get(limit.key)
        if state is None:
            state = self.keys[limit.key] = _Key(0, _NONE, 0)
        cutoff = now_ms - limit.window_ms
        if state.oldest_ms <= cutoff:
            gone = self.db.execute(
                "DELETE FROM rate_log WHERE key = ? AND ms <= ?", (limit.key, cutoff)
            ).rowcount
            kept = [p for p in state.pending if p[0] > cutoff]
            (oldest,) = self.db.execute(
                "SELECT MIN(ms) FROM rate_log WHERE key = ?", (limit.key,)
            ).fetchone()
            state.n -= gone + len(state.pending) - len(kept)
            state.pending, state.touched = kept, True
            state.oldest_ms = min([_NONE if oldest is None else oldest] + [p[0] for p in kept])
        return state

    def refusal(self, limits: Sequence[Limit], now_ms: int) -> RateLimited | None:
        """The error of the first full limit at ``now_ms``, or None when all have room."""
        for limit in limits:
            state = self._key(limit, now_ms)
            if state.n >= limit.cap:
                # Free again when the send that puts the key over the cap expires: the
                # (n - cap + 1)-th oldest, stored or taken in this batch.
                rank = state.n - limit.cap + 1
                stored = self.db.execute(
                    "SELECT ms FROM rate_log WHERE key = ? ORDER BY ms LIMIT ?",
                    (limit.key, rank),
                ).fetchall()
                times = sorted([r[0] for r in stored] + [p[0] for p in state.pending])
                return limit.refusal(times[rank - 1] + limit.window_ms - now_ms)
        return None

    def take(self, limits: Sequence[Limit], now_ms: int, message_id: str) -> None:
        """Take one slot of each limit (after ``refusal`` said there is room)."""
        for limit in limits:
            state = self.keys[limit.key]
            state.n += 1
            state.pending.append((now_ms, message_id))
            state.oldest_ms = min(state.oldest_ms, now_ms)
            state.expires_ms = max(state.expires_ms, now_ms + limit.window_ms)
            state.touched = True

    def flush(self) -> None:
        """Write this batch's takes and counts; drop keys whose every send expired."""
        rows = [(k, ms, ident) for k, s in self.keys.items() for ms, ident in s.pending]
        if rows:
            self.db.executemany("INSERT INTO rate_log VALUES (?, ?, ?)", rows)
        counts = [(k, s.n, s.oldest_ms, s.expires_ms) for k, s in self.keys.items() if s.touched]
        if counts:
            self.db.executemany(
                "INSERT INTO rate_keys VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "n = excluded.n, oldest_ms = excluded.oldest_ms, "
                "expires_ms = excluded.expires_ms",
                counts,
            )
        if self.keys:
            # Index seeks that find nothing on most batches.
            self.db.execute(
                "DELETE FROM rate_log WHERE key IN "
                "(SELECT key FROM rate_keys WHERE expires_ms <= ?)",
                (self.now_ms,),
            )
            self.db.execute("DELETE FROM rate_keys WHERE expires_ms <= ?", (self.now_ms,))
