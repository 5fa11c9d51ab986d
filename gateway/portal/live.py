"""Live updates: one tail of the store's event log per process, fanned out to the open
event streams of the members the events are about.

The tail reads the log (so a message received by another process on the same Redis
store shows up too), first lets the inbox index catch up with it (``indexer.py``), then
hands each event to the streams of its member as one pre-built server-sent-event frame:
the JSON is encoded once per event, whatever the number of streams. One process indexes:
its tail holds the store's ``portal:indexer`` slot (a lease it renews; another process
takes over :data:`INDEX_LEASE` after it died). The others hand out only what that one
indexed, and a tail with no open stream there reads nothing at all: N processes cost one
index, not N racing for the same compare-and-set. Between looks it
waits on the store's ``EventWaiter`` (Redis announces every append; SQLite is looked at
every few milliseconds), at most ``poll_interval``. Every ``heartbeat_seconds`` each
stream gets a heartbeat (and checks that its session still exists). A stream that cannot
keep up is closed; its browser reconnects with ``Last-Event-ID`` and gets what it missed
from the log (``replay``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from gateway import jsoncodec
from gateway.coordination import Coordination
from gateway.models import Event
from gateway.portal import indexer
from gateway.portal.storage import PortalStore
from gateway.retry import Failing
from gateway.store.base import Store
from gateway.store.event_waiters import grown_or_stopped

log = logging.getLogger("gateway.portal.live")
QUEUE_LIMIT = 256  # frames a slow stream may lag behind before it is closed
INDEX_SLOT = "portal:indexer"
INDEX_LEASE = 10.0  # seconds: how long after the indexing process died another takes over
# Seconds between a resting tail's looks at the index cursor (its position, which pages
# rendered meanwhile resume from; it does not skip ahead when a stream opens, so nothing
# is lost, and a stream gets at most this much of the past again).
RESTING_LOOK = 1.0
FAX_PAGE = "fax.page"
LIVE_TYPES = frozenset({*indexer.MESSAGE_EVENTS, FAX_PAGE})


@dataclass(slots=True)
class Frame:
    """One event as every stream sends it."""

    seq: int
    data: bytes


HEARTBEAT = Frame(0, b": heartbeat\n\n")  # seq 0: never an event


@functools.lru_cache(maxsize=16384)
def contact_label(number: str, region: str) -> str:
    """A number as the portal shows it: national format at home, else international.

    Cached: every inbox page formats its rows' numbers and every live event its sender's,
    the same few thousand contacts over and over, and formatting costs ~15 us each."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    home = phonenumbers.region_code_for_number(parsed) == region.upper()
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if home
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return str(phonenumbers.format_number(parsed, fmt))


def payload(event: Event, region: str) -> dict[str, Any] | None:
    """What a browser gets of ``event`` (enough to refresh the right parts and announce
    it), or None for events the portal does not show."""
    if event.type not in LIVE_TYPES:
        return None
    data = event.data
    out: dict[str, Any] = {
        "type": event.type,
        "conversation_id": data.get("conversation_id"),
        "message_id": data.get("id") or data.get("message_id"),
    }
    if event.type == FAX_PAGE:
        out.update(page=data.get("page"), pages=data.get("pages"))
        return out
    inbound = data.get("direction") == "inbound"
    remote = data.get("from") if inbound else data.get("to")
    out.update(
        direction=data.get("direction"),
        status=data.get("status"),
        channel=data.get("channel"),
        contact=contact_label(str(remote), region) if remote else None,
    )
    return out


def frame(event: Event, region: str) -> Frame | None:
    """The server-sent-event frame of ``event`` (None: not shown)."""
    body = payload(event, region)
    if body is None:
        return None
    data = f"id: {event.seq}\nevent: portal\ndata: {jsoncodec.dumps(body)}\n\n"
    return Frame(event.seq, data.encode())


@dataclass(eq=False)
class Subscription:
    """One open stream of a member."""

    member_id: str
    queue: asyncio.Queue[Frame | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    closed: bool = False

    def offer(self, item: Frame | None) -> None:
        """Queue a frame; a stream that lags too far behind is closed instead."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.closed = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class Hub:
    """The tail of one process: indexes, then fans events out (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        portal: PortalStore,
        region: str,
        poll_interval: float,
        heartbeat: float = 15.0,
        shared: Coordination | None = None,
    ) -> None:
        self.store = store
        self.portal = portal
        self.region = region
        self.poll_interval = poll_interval
        self.heartbeat = heartbeat
        self.seq: int | None = None  # the last event handed out (None: not started)
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._members: dict[str, str] = {}  # message id → member (events without one)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # a stream opened: a resting tail starts reading
        # None: this tail always indexes (a store one process opens, or a test's hub).
        self._shared = shared
        self._owner = f"hub-{uuid.uuid4().hex[:12]}"
        self.indexing = shared is None  # whether this tail holds the indexer slot
        self._lease_checked = -INDEX_LEASE
        self._resting = False  # what the last step found: nothing to do until a stream opens
        self._blocked = False  # ... or events the indexing process has not indexed yet

    @property
    def streams(self) -> int:
        """Open streams."""
        return sum(len(s) for s in self._subs.values())

    def start(self) -> None:
        """Start the tail (once)."""
        if self._task is None or self._task.done():
            self._stop.clear()
            self._task = asyncio.create_task(self._run(), name="portal-live")

    async def stop(self) -> None:
        """Stop the tail and close every stream."""
        self._stop.set()
        self._wake.set()  # a resting tail waits on this, not on _stop
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for subs in self._subs.values():
            for sub in subs:
                sub.offer(None)

    def subscribe(self, member_id: str) -> Subscription:
        """A new stream for ``member_id`` (starts the tail if needed)."""
        self.start()
        sub = Subscription(member_id)
        self._subs.setdefault(member_id, set()).add(sub)
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget a stream."""
        subs = self._subs.get(sub.member_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.member_id]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self.store.event_waiter()
        beat = loop.time() + self.heartbeat
        # While the store is down: one traceback, then a line per failure, backing off.
        failing = Failing("the portal's event tail", self.poll_interval, log)
        try:
            while not self._stop.is_set():
                try:
                    more = await self.step()
                    failing.ok()
                    if more:
                        # The SQLite store answers without suspending: catching up on a
                        # long event log (a process started behind it) would otherwise
                        # hold the loop for seconds, and the API's requests with it.
                        await asyncio.sleep(0)
                    elif self._resting or self._blocked:
                        # Resting: until a stream opens or the indexer slot is due for a
                        # look. Blocked: the log is ahead of the index, so the waiter
                        # would answer at once; look again after a poll interval.
                        wait = RESTING_LOOK if self._resting else self.poll_interval
                        wait = max(0.0, min(wait, beat - loop.time()))
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), wait)
                        self._wake.clear()
                    else:
                        wait = max(0.0, min(self.poll_interval, beat - loop.time()))
                        await grown_or_stopped(waiter, self.seq or 0, wait, self._stop)
                except Exception as exc:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), failing.failed(exc))
                if loop.time() >= beat:
                    beat = loop.time() + self.heartbeat
                    for subs in self._subs.values():
                        for sub in subs:
                            sub.offer(HEARTBEAT)
        finally:
            await waiter.aclose()
            if self.indexing and self._shared is not None:
                with contextlib.suppress(Exception):  # it expires by itself otherwise
                    await self._shared.release_slot(INDEX_SLOT, 0, self._owner)
                self.indexing = False

    async def _hold_index(self) -> bool:
        """Whether this tail indexes: it takes the indexer slot when free and renews it,
        looking every third of the lease."""
        shared = self._shared
        now = asyncio.get_running_loop().time()
        if shared is None or now - self._lease_checked < INDEX_LEASE / 3:
            return self.indexing
        self._lease_checked = now
        if self.indexing:
            self.indexing = await shared.renew_slot(INDEX_SLOT, 0, self._owner, INDEX_LEASE)
        if not self.indexing:
            taken = await shared.claim_slot(INDEX_SLOT, 1, self._owner, INDEX_LEASE)
            self.indexing = taken is not None
            if self.indexing:
                log.info("this process indexes the portal's inbox (%s)", self._owner)
        return self.indexing

    async def step(self) -> bool:
        """Index and hand out the next events; True when more may be waiting."""
        self._resting = self._blocked = False
        indexing = await self._hold_index()
        if self.seq is None or (not indexing and not self._subs):
            # Not indexing and no stream here: read nothing, only note where the index
            # stands (a page rendered now resumes its stream from there).
            self.seq = await self.portal.index_cursor()
            if not indexing and not self._subs:
                self._resting = True
                return False
        events = await self.store.list_events(self.seq, indexer.BATCH)
        if not events:
            return False
        cursor = await self.portal.index_cursor()
        if cursor < events[-1].seq and not indexing:
            # The indexing process has not come this far: hand out what it indexed.
            events = [e for e in events if e.seq <= cursor]
            if not events:
                self._blocked = True
                return False
        elif cursor < events[-1].seq:
            # Behind: catch the index up to these events first (another process may
            # be doing the same; the cursor's compare-and-set keeps it exact).
            while cursor < events[-1].seq:
                if not await indexer.index_step(self.store, self.portal):
                    break
                cursor = await self.portal.index_cursor()
                await asyncio.sleep(0)  # see _run: a long catch-up must not starve requests
        for event in events:
            await self._hand_out(event)
        self.seq = events[-1].seq
        return len(events) == indexer.BATCH

    async def _hand_out(self, event: Event) -> None:
        if not self._subs:
            return
        member = await self._member_of(event)
        subs = self._subs.get(member) if member else None
        if not subs:
            return
        item = frame(event, self.region)
        if item is not None:
            for sub in list(subs):
                sub.offer(item)

    async def _member_of(self, event: Event) -> str | None:
        member = event.data.get("member_id")
        if isinstance(member, str):
            return member
        message_id = event.data.get("message_id")
        if not isinstance(message_id, str):
            return None
        member = self._members.get(message_id)
        if member is None:
            message = await self.store.get_message(message_id)
            if message is None:
                return None
            member = message.member_id
            if len(self._members) > 10_000:
                self._members.clear()
            self._members[message_id] = member
        return member

    async def replay(self, member_id: str, after_seq: int) -> AsyncIterator[Frame]:
        """The member's frames after ``after_seq`` up to what the tail handed out."""
        until = self.seq if self.seq is not None else await self.portal.index_cursor()
        seq = after_seq
        while seq < until:
            events = await self.store.list_events(seq, indexer.BATCH)
            if not events:
                return
            for event in events:
                if event.seq > until:
                    return
                if await self._member_of(event) == member_id:
                    item = frame(event, self.region)
                    if item is not None:
                        yield item
            seq = events[-1].seq
