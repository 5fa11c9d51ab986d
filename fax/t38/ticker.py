"""One clock per process that drives every media session every 20 ms.

spandsp has no clock of its own: a session must tell it how many samples (8 kHz) have
passed. ``MediaTicker`` runs ONE timer on the event loop, scheduled on an absolute 20 ms
grid of ``loop.time()``; at each tick it hands every session the real number of samples
elapsed since that session's previous tick, so a late or missed tick is caught up with
the true sample count rather than lost. One timer for all sessions keeps the per-call
cost at a method call per tick (no timer handle, no task per session).

``SimulatedTicker`` drives the same sessions without pacing: each step advances 160
samples and then yields to the loop a few times, so datagrams sent on loopback in that
step are received before the next one. Two spandsp terminals fax two fine pages in a
fraction of a second that way (for unit tests).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Protocol

__all__ = ["MediaTicker", "SimulatedTicker", "Tickable", "Ticker"]

SAMPLE_RATE = 8000
TICK_SAMPLES = 160  # 20 ms
log = logging.getLogger("fax.t38.ticker")


class Tickable(Protocol):
    """What a ticker drives: ``tick(samples)``; ``fail(exc)`` when ``tick`` raised."""

    def tick(self, samples: int) -> None:
        """Advance by ``samples`` (8 kHz) of real (or simulated) time."""

    def fail(self, exc: BaseException) -> None:
        """``tick`` raised ``exc``: end the session with it."""


class Ticker(Protocol):
    """A clock that drives sessions."""

    def add(self, session: Tickable) -> None:
        """Start driving ``session`` from now on."""

    def remove(self, session: Tickable) -> None:
        """Stop driving ``session`` (idempotent)."""


class _Base:
    def __init__(self) -> None:
        # session -> the ticker's sample count at that session's previous tick
        self._sessions: dict[Tickable, int] = {}
        self.total = 0

    def remove(self, session: Tickable) -> None:
        """Stop driving ``session`` (idempotent)."""
        self._sessions.pop(session, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def _drive(self, total: int) -> None:
        self.total = total
        sessions = self._sessions
        for session, last in list(sessions.items()):
            if session not in sessions:  # removed by an earlier session in this tick
                continue
            sessions[session] = total
            samples = total - last
            if samples <= 0:
                continue
            try:
                session.tick(samples)
            except Exception as exc:
                sessions.pop(session, None)
                log.exception("media session failed in its tick")
                session.fail(exc)


class MediaTicker(_Base):
    """The real-time ticker: one ``loop.call_at`` chain on a 20 ms grid for all sessions.

    ``late_ticks`` counts ticks that ran more than one interval after their slot and
    ``max_lag`` is the worst lateness seen (seconds): the figures a load bench reports.
    """

    _shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MediaTicker] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, interval: float = 0.02
    ) -> None:
        super().__init__()
        self._loop = loop or asyncio.get_running_loop()
        self.interval = interval
        self._t0 = self._loop.time()
        self._next = self._t0
        self._handle: asyncio.TimerHandle | None = None
        self.ticks = 0
        self.late_ticks = 0
        self.max_lag = 0.0

    @classmethod
    def shared(cls) -> MediaTicker:
        """The one ticker of the running loop (created on first use)."""
        loop = asyncio.get_running_loop()
        ticker = cls._shared.get(loop)
        if ticker is None:
            ticker = cls._shared[loop] = cls(loop)
        return ticker

    def _samples_now(self) -> int:
        return int((self._loop.time() - self._t0) * SAMPLE_RATE)

    def add(self, session: Tickable) -> None:
        """Start driving ``session``; its first tick gets the samples elapsed from now."""
        self._sessions[session] = self._samples_now()
        if self._handle is None:
            now = self._loop.time()
            self._next = now + self.interval
            self._handle = self._loop.call_at(self._next, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        lag = now - self._next
        self.ticks += 1
        self.max_lag = max(self.max_lag, lag)
        if lag > self.interval:
            self.late_ticks += 1
        self._drive(int((now - self._t0) * SAMPLE_RATE))
        if not self._sessions:
            self._handle = None
            return
        self._next += self.interval
        if self._next <= now:  # fell behind: next slot on the grid after now
            missed = int((now - self._next) / self.interval) + 1
            self._next += missed * self.interval
        self._handle = self._loop.call_at(self._next, self._tick)

    def close(self) -> None:
        """Stop the timer (sessions still registered are no longer driven)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._sessions.clear()


class SimulatedTicker(_Base):
    """Drives sessions as fast as they go: 160 samples per step, then ``yields`` loop passes."""

    def __init__(self, yields: int = 4) -> None:
        super().__init__()
        self.yields = yields
        self._task: asyncio.Task[None] | None = None

    def add(self, session: Tickable) -> None:
        """Start driving ``session`` at the current simulated time."""
        self._sessions[session] = self.total
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def seconds(self) -> float:
        """Simulated time so far."""
        return self.total / SAMPLE_RATE

    async def _run(self) -> None:
        while self._sessions:
            self._drive(self.total + TICK_SAMPLES)
            for _ in range(self.yields):
                await asyncio.sleep(0)
