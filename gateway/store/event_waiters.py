"""Waiting for the event log to grow: what the read models that follow the log (the
webhook fan-out, the portal's inbox index and live tail) do between looks. Public:
extensions that follow the log wait with :func:`grown_or_stopped`.

- Redis: every append PUBLISHes the last seq on the channel named like the seq counter's
  key; one subscription per process (:class:`Announcements`) wakes its waiters at once,
  whichever process appended.
- SQLite: one process owns the file and every write goes through its ``Engine``, whose
  commits wake the waiter; a slow look at the log's last seq covers a write by another
  process on the same file (an admin command).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.store.base import EventWaiter
from gateway.store.redis_backend import RedisBackend
from gateway.store.sqlite_engine import Engine

log = logging.getLogger("gateway.store")
SQLITE_LOOK_EVERY = 0.25  # seconds: the look for writes by other processes


async def grown_or_stopped(
    waiter: EventWaiter, after_seq: int, timeout: float, stop: asyncio.Event
) -> None:
    """What a reader of the log does between looks: return when an event after
    ``after_seq`` may exist, ``stop`` is set or ``timeout`` seconds passed."""
    grown = asyncio.ensure_future(waiter.wait(after_seq, timeout))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({grown, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (grown, stopped):
            task.cancel()
        await asyncio.gather(grown, stopped, return_exceptions=True)


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


class Announcements:
    """One subscription per process to the log's announcements, read by one task straight
    from the connection's parser: every announcement costs one parse in the process, not
    one trip through the client's pub/sub layers per waiter (under load the log is
    announced several times per message, and each waiter would read them all)."""

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend
        self.channel = backend.key("events", "seq")
        self.last = -1  # the highest seq announced (-1: not subscribed yet)
        self._grown: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def _advance(self, seq: int) -> None:
        if seq > self.last:
            self.last = seq
            grown, self._grown = self._grown, None
            if grown is not None and not grown.done():
                grown.set_result(None)

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return when an event after ``after_seq`` was announced, or after ``timeout``."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._listen(), name="event-announcements")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.last <= after_seq and (left := deadline - loop.time()) > 0:
            if self._grown is None:
                self._grown = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._grown), left)

    async def _listen(self) -> None:
        while True:
            pubsub = self._b.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Subscribed first, then looked: an append in between is not missed.
                last = await self._b.client.get(self.channel)
                self._advance(int(last or 0))
                if pubsub.connection is None:
                    raise ConnectionError("the subscription has no connection")
                parser = pubsub.connection._parser
                while True:
                    reply = await parser.read_response()
                    if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                        self._advance(int(reply[2]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: waiters fall back to their timeouts
                log.warning("event announcements: %s; subscribing again in a second", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class RedisEventWaiter:
    """Waits on the process's :class:`Announcements`."""

    def __init__(self, announcements: Announcements) -> None:
        self._announcements = announcements

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return when an event after ``after_seq`` is announced (or already was)."""
        await self._announcements.wait(after_seq, timeout)

    async def aclose(self) -> None:
        """Nothing of its own: the subscription is the process's."""
