"""Inbound concatenated messages put back together, and stable ids for inbound messages.

Parts are keyed by (source, destination, reference, total) and may arrive in any order.
A set leaves only after the gateway stored it (:meth:`Reassembler.done`), so a failure
to store keeps the parts for the SMSC's redelivery of the last one. A set still
incomplete after ``timeout`` is delivered with what arrived, gaps marked ``[…]`` and
``meta.incomplete`` set: every part was already acknowledged to the SMSC, which will not
send them again, so holding them back would lose what the sender wrote. A missing part
that turns up after that is delivered on its own (``meta.late_part``); a part that was
already delivered is a redelivery and ignored.

SMPP gives an inbound message no id of its own, and an SMSC redelivers a deliver_sm whose
response it did not get. :class:`InboundIds` therefore derives the id from the content
(addresses, concatenation reference, text) and a time bucket of ``window`` seconds: a
redelivery maps to the same id (the gateway dedupes on it), also after a restart within
the bucket. The price: the same text from the same sender twice within the window is
taken as one message. ``window = 0`` gives every deliver_sm its own id.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from connectors.smpp.content import Received
from gateway.coordination import Coordination, PartSet

GAP = "[…]"
# Memory bounds: beyond these, the oldest remembered sets / ids are forgotten first.
MAX_FINISHED = 100_000
MAX_RECENT_IDS = 200_000

Key = tuple[str, str, int, int]


@dataclass(slots=True)
class Assembled:
    """A whole inbound message (or what arrived of it)."""

    key: Key | None
    source: str
    dest: str
    text: str
    segments: int
    ref: int | None = None
    missing: list[int] = field(default_factory=list)
    late_part: int | None = None  # the index of a part that came after its set was delivered


@dataclass(slots=True)
class _Set:
    source: str
    dest: str
    total: int
    ref: int
    first_seen: float
    parts: dict[int, str] = field(default_factory=dict)

    def assemble(self, key: Key) -> Assembled:
        missing = [i for i in range(1, self.total + 1) if i not in self.parts]
        text = "".join(self.parts.get(i, GAP) for i in range(1, self.total + 1))
        return Assembled(key, self.source, self.dest, text, self.total, self.ref, missing)


class Reassembler:
    """Collects the parts of concatenated inbound messages."""

    def __init__(self, timeout: float, remember: float) -> None:
        self.timeout = timeout
        self.remember = remember  # how long a finished set's late duplicates are ignored
        self._sets: dict[Key, _Set] = {}
        # finished set → (forget at, the part indexes it held)
        self._finished: OrderedDict[Key, tuple[float, frozenset[int]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, r: Received, now: float) -> Assembled | None:
        """Add one part; the whole message when this completed it (or it had one part).

        A part of a set finished within ``remember`` seconds is ignored (None) when the
        set held it (an SMSC's redelivery), and returned alone when the set lacked it.
        """
        c = r.concat
        if c is None:
            return Assembled(None, r.source, r.dest, r.text, 1)
        key = (r.source, r.dest, c.ref, c.total)
        self._forget(now)
        finished = self._finished.get(key)
        if finished is not None:
            if c.seq in finished[1]:
                return None
            return Assembled(None, r.source, r.dest, r.text, 1, c.ref, late_part=c.seq)
        s = self._sets.get(key)
        if s is None:
            s = self._sets[key] = _Set(r.source, r.dest, c.total, c.ref, now)
        s.parts[c.seq] = r.text
        if len(s.parts) == c.total:
            return s.assemble(key)
        return None

    def done(self, key: Key | None, now: float) -> None:
        """The gateway stored this set: drop it and ignore its late duplicates."""
        if key is None:
            return
        s = self._sets.pop(key, None)
        if s is not None:
            self._finished[key] = (now + self.remember, frozenset(s.parts))

    def expired(self, now: float) -> list[Assembled]:
        """Sets older than ``timeout``: what arrived of them, to deliver as it is."""
        return [s.assemble(k) for k, s in self._sets.items() if now - s.first_seen >= self.timeout]

    def _forget(self, now: float) -> None:
        while len(self._finished) > MAX_FINISHED:
            self._finished.popitem(last=False)
        while self._finished:
            key, (until, _) = next(iter(self._finished.items()))
            if until > now:
                break
            del self._finished[key]


class SharedReassembler:
    """The parts of concatenated inbound messages kept in the store's ``Coordination``
    (several processes on one Redis: a part may arrive on any process's bind), with the
    semantics of :class:`Reassembler`: the part that completes a set hands it to its
    process alone; a set incomplete after ``timeout`` goes to one process's sweep; a
    delivered set remembers its parts for ``remember`` seconds (redelivery or late part).
    """

    def __init__(self, shared: Coordination, prefix: str, timeout: float, remember: float) -> None:
        self.shared = shared
        self.prefix = prefix  # the connector's own names start with it
        self.timeout = timeout
        self.remember = remember

    def _name(self, key: Key) -> str:
        source, dest, ref, total = key
        return f"{self.prefix}{source}\x1f{dest}\x1f{ref}\x1f{total}"

    def _assembled(self, found: PartSet) -> Assembled:
        source, dest, ref, total = found.name[len(self.prefix) :].split("\x1f")
        key = (source, dest, int(ref), int(total))
        s = _Set(source, dest, int(total), int(ref), 0.0, dict(found.parts))
        return s.assemble(key)

    async def add(self, r: Received) -> Assembled | None:
        """Add one part; the whole message when this completed it (or it had one part)."""
        c = r.concat
        if c is None:
            return Assembled(None, r.source, r.dest, r.text, 1)
        key = (r.source, r.dest, c.ref, c.total)
        state, found = await self.shared.add_part(
            self._name(key), c.seq, c.total, r.text, self.remember
        )
        if state == "late":
            return Assembled(None, r.source, r.dest, r.text, 1, c.ref, late_part=c.seq)
        if found is None:  # held, or a duplicate
            return None
        return self._assembled(found)

    def _set(self, a: Assembled) -> PartSet | None:
        if a.key is None:
            return None
        held = set(range(1, a.segments + 1)) - set(a.missing)
        return PartSet(self._name(a.key), a.segments, dict.fromkeys(held, ""))

    async def done(self, a: Assembled) -> None:
        """The gateway stored this set: drop its parts, remember which it held."""
        found = self._set(a)
        if found is not None:
            await self.shared.finish_parts(found, self.remember)

    async def expired(self, limit: int = 100) -> list[Assembled]:
        """Sets incomplete after ``timeout``, each handed to this process alone."""
        found = await self.shared.expired_parts(self.prefix, self.timeout, limit)
        return [self._assembled(f) for f in found]

    async def failed(self, a: Assembled) -> None:
        """An expired set that could not be stored: swept again later."""
        found = self._set(a)
        if found is not None:
            await self.shared.return_parts(found)


class InboundIds:
    """Content-derived carrier ids for inbound messages (see the module docstring)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._recent: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._counter = itertools.count(1)

    def carrier_id(self, a: Assembled, now: float, wall: datetime) -> str:
        """The id of ``a``: the same for a redelivery within the window."""
        raw = f"{a.source}\x00{a.dest}\x00{a.ref}\x00{a.segments}\x00{a.text}".encode()
        digest = hashlib.blake2s(raw, digest_size=10).hexdigest()
        if self.window <= 0:
            return f"mo-{digest}-{int(wall.timestamp() * 1000)}-{next(self._counter)}"
        while len(self._recent) > MAX_RECENT_IDS:
            self._recent.popitem(last=False)
        while self._recent:
            first, (_, until) = next(iter(self._recent.items()))
            if until > now:
                break
            del self._recent[first]
        hit = self._recent.get(digest)
        if hit is not None:
            return hit[0]
        cid = f"mo-{digest}-{int(wall.timestamp() // self.window)}"
        self._recent[digest] = (cid, now + self.window)
        return cid
