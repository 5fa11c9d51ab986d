"""What the processes sharing one store agree on: carrier session slots, send rates,
pauses and backoffs, and the parts of inbound messages split over several deliveries.

Public: connectors get it as ``ConnectorContext.shared``. Several gateway processes on
one Redis store share one :class:`Coordination` (``gateway/store/redis_shared.py``, on the
Redis server's clock); a store that one process opens (SQLite) gives
:class:`LocalCoordination`, the same semantics in memory. Every name is chosen by the
caller (a connector prefixes its own id), and every entry ends by itself: slots and pauses
expire, part sets are swept after their timeout, backoffs are forgotten.

- **Slots** (SMPP binds): ``count`` numbered slots of a name, each held by one owner for a
  lease it renews; a holder that stops renewing (its process died) loses the slot when the
  lease runs out, and another process takes it.
- **Rate** (WhatsApp's messages per second per business number): the generic cell rate
  algorithm on one shared timestamp; ``reserve`` takes the next slot and says how long to
  wait for it, ``push_back`` holds every sender back (the carrier said "too fast").
- **Values with a lifetime** (a recipient's backoff): ``get``/``put``/``delete``.
- **Part sets** (concatenated SMS): the parts of one set, wherever they arrive; the part
  that completes a set hands it to its caller alone, a set still incomplete after its
  timeout is handed to one caller of ``expired_parts``, and a finished set remembers which
  parts it held so that a redelivered part is told apart from a late one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

# What ``add_part`` says of a part: it completed its set ("complete", the parts are the
# caller's to deliver), the set still waits for others ("held"), its set was delivered
# already and held this part ("duplicate", a redelivery) or lacked it ("late").
PartState = Literal["complete", "held", "duplicate", "late"]


@dataclass(frozen=True, slots=True)
class PartSet:
    """The parts of one set (index → value), and how many it should have."""

    name: str
    total: int
    parts: dict[int, str]


class Coordination(Protocol):
    """State that every process sharing the store sees alike (see the module docstring)."""

    # Whether other processes may share it (Redis); False: this process's memory only.
    spans_processes: bool

    async def claim_slot(self, name: str, count: int, owner: str, lease: float) -> int | None:
        """Hold a free slot of ``name``'s ``count`` (or one whose lease ran out) for
        ``lease`` seconds: its index, or None when every slot is held."""
        ...

    async def renew_slot(self, name: str, index: int, owner: str, lease: float) -> bool:
        """Extend ``owner``'s hold on slot ``index`` by ``lease`` seconds; False when
        it lost the slot (its lease ran out and another owner took it)."""
        ...

    async def release_slot(self, name: str, index: int, owner: str) -> None:
        """Give slot ``index`` back if ``owner`` holds it."""
        ...

    async def slots_held(self, name: str, count: int) -> int:
        """How many of ``name``'s slots are held right now (by anyone)."""
        ...

    async def reserve(self, name: str, rate: float, burst: int) -> float:
        """Take the next send slot of ``name`` (``rate`` per second, ``burst`` at once):
        the seconds to wait for it."""
        ...

    async def push_back(self, name: str, seconds: float, rate: float, burst: int) -> None:
        """Hold every send of ``name`` back for ``seconds`` (then one burst at most)."""
        ...

    async def get(self, name: str) -> str | None:
        """The value stored under ``name`` (None when absent or expired)."""
        ...

    async def put(self, name: str, value: str, ttl: float) -> None:
        """Store ``value`` under ``name`` for ``ttl`` seconds."""
        ...

    async def delete(self, name: str) -> None:
        """Forget ``name``."""
        ...

    async def add_part(
        self, name: str, index: int, total: int, value: str, remember: float
    ) -> tuple[PartState, PartSet | None]:
        """Keep part ``index`` of set ``name`` (``total`` parts); the set when this part
        completed it (``remember``: how long a delivered set's parts are remembered)."""
        ...

    async def finish_parts(self, part_set: PartSet, remember: float) -> None:
        """The set was delivered: drop its parts, remember which it held."""
        ...

    async def expired_parts(self, prefix: str, timeout: float, limit: int) -> list[PartSet]:
        """Up to ``limit`` sets under ``prefix`` still incomplete ``timeout`` seconds
        after their first part, each handed to one caller only (deliver it, then
        :meth:`finish_parts`, or :meth:`return_parts` when that failed)."""
        ...

    async def return_parts(self, part_set: PartSet) -> None:
        """An expired set whose delivery failed: swept again at the next look."""
        ...


@dataclass(slots=True)
class _Parts:
    total: int
    first: float
    parts: dict[int, str] = field(default_factory=dict)
    claimed: bool = False


class LocalCoordination:
    """:class:`Coordination` in one process's memory (a store only it opens), on an
    injectable monotonic clock."""

    spans_processes = False

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._slots: dict[tuple[str, int], tuple[str, float]] = {}  # → (owner, until)
        self._tat: dict[str, float] = {}
        self._values: dict[str, tuple[str, float]] = {}
        self._sets: dict[str, _Parts] = {}
        self._done: dict[str, tuple[frozenset[int], float]] = {}

    async def claim_slot(self, name: str, count: int, owner: str, lease: float) -> int | None:
        """See :meth:`Coordination.claim_slot`."""
        now = self.monotonic()
        for index in range(count):
            held = self._slots.get((name, index))
            if held is None or held[1] <= now:
                self._slots[name, index] = (owner, now + lease)
                return index
        return None

    async def renew_slot(self, name: str, index: int, owner: str, lease: float) -> bool:
        """See :meth:`Coordination.renew_slot`."""
        now = self.monotonic()
        held = self._slots.get((name, index))
        if held is None or held[0] != owner or held[1] <= now:
            return False
        self._slots[name, index] = (owner, now + lease)
        return True

    async def release_slot(self, name: str, index: int, owner: str) -> None:
        """See :meth:`Coordination.release_slot`."""
        held = self._slots.get((name, index))
        if held is not None and held[0] == owner:
            del self._slots[name, index]

    async def slots_held(self, name: str, count: int) -> int:
        """See :meth:`Coordination.slots_held`."""
        now = self.monotonic()
        return sum(
            1 for i in range(count) if (h := self._slots.get((name, i))) is not None and h[1] > now
        )

    async def reserve(self, name: str, rate: float, burst: int) -> float:
        """See :meth:`Coordination.reserve`."""
        now = self.monotonic()
        interval = 1.0 / rate
        tat = max(self._tat.get(name, now), now)
        self._tat[name] = tat + interval
        return max(0.0, tat - (burst - 1) * interval - now)

    async def push_back(self, name: str, seconds: float, rate: float, burst: int) -> None:
        """See :meth:`Coordination.push_back`."""
        resume = self.monotonic() + seconds + (burst - 1) / rate
        self._tat[name] = max(self._tat.get(name, 0.0), resume)

    async def get(self, name: str) -> str | None:
        """See :meth:`Coordination.get`."""
        hit = self._values.get(name)
        if hit is None or hit[1] <= self.monotonic():
            self._values.pop(name, None)
            return None
        return hit[0]

    async def put(self, name: str, value: str, ttl: float) -> None:
        """See :meth:`Coordination.put`."""
        now = self.monotonic()
        if len(self._values) > 10_000:  # forget what ran out
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        self._values[name] = (value, now + ttl)

    async def delete(self, name: str) -> None:
        """See :meth:`Coordination.delete`."""
        self._values.pop(name, None)

    async def add_part(
        self, name: str, index: int, total: int, value: str, remember: float
    ) -> tuple[PartState, PartSet | None]:
        """See :meth:`Coordination.add_part`."""
        now = self.monotonic()
        done = self._done.get(name)
        if done is not None and done[1] > now:
            return ("duplicate" if index in done[0] else "late"), None
        s = self._sets.get(name)
        if s is None:
            s = self._sets[name] = _Parts(total, now)
        if s.claimed or index in s.parts:
            s.parts[index] = value
            return "held", None
        s.parts[index] = value
        if len(s.parts) < total:
            return "held", None
        s.claimed = True
        return "complete", PartSet(name, total, dict(s.parts))

    async def finish_parts(self, part_set: PartSet, remember: float) -> None:
        """See :meth:`Coordination.finish_parts`."""
        now = self.monotonic()
        self._sets.pop(part_set.name, None)
        self._done = {k: v for k, v in self._done.items() if v[1] > now}
        self._done[part_set.name] = (frozenset(part_set.parts), now + remember)

    async def expired_parts(self, prefix: str, timeout: float, limit: int) -> list[PartSet]:
        """See :meth:`Coordination.expired_parts`."""
        now = self.monotonic()
        out: list[PartSet] = []
        for name, s in self._sets.items():
            if len(out) >= limit:
                break
            if name.startswith(prefix) and not s.claimed and now - s.first >= timeout:
                s.claimed = True
                out.append(PartSet(name, s.total, dict(s.parts)))
        return out

    async def return_parts(self, part_set: PartSet) -> None:
        """See :meth:`Coordination.return_parts`."""
        s = self._sets.get(part_set.name)
        if s is not None:
            s.claimed = False
