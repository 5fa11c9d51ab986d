"""Waiting for the event log to grow: what the read models that follow the log (the
webhook fan-out, the portal's inbox index and live tail) do between looks.

- Redis: ``append_events`` PUBLISHes the last seq on the channel named like the seq
  counter's key; the waiter subscribes, so any process's append wakes it at once.
- SQLite: one process owns the file and every write goes through its ``Engine``, whose
  commits wake the waiter; a slow look at the log's last seq covers a write by another
  process on the same file (an admin command).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from gateway.store.redis_backend import RedisBackend
from gateway.store.sqlite_engine import Engine

SQLITE_LOOK_EVERY = 0.25  # seconds: the look for writes by other processes


class SqliteEventWaiter:
    """Waits for the ``events`` table to grow (woken by the engine's commits)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _last(self) -> int:
        row = self.engine.conn.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return when the log's last seq passes ``after_seq``, or after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._last() <= after_seq:
            left = deadline - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(self.engine.committed()), min(left, SQLITE_LOOK_EVERY)
                )

    async def aclose(self) -> None:
        """Nothing held."""


class RedisEventWaiter:
    """Waits for the log's announcements (one subscription per waiter)."""

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend
        self.channel = backend.key("events", "seq")
        self._pubsub: Any = None

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return when an event after ``after_seq`` is announced (or already there)."""
        loop = asyncio.get_running_loop()
        if self._pubsub is None:
            self._pubsub = self._b.client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(self.channel)
        # Subscribed first, then looked: an append in between is not missed.
        last = await self._b.client.get(self.channel)
        if last is not None and int(last) > after_seq:
            return
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            message = await self._pubsub.get_message(timeout=left)
            if message is not None and int(message["data"]) > after_seq:
                return

    async def aclose(self) -> None:
        """End the subscription."""
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
