"""Bookkeeping of the send path: the submit rate, and the message ids the SMSC gave us.

:class:`SubmittedIds` remembers recent submit_sm_resp ids under every spelling a
receipt may use (hex or decimal, any case, leading zeros) and holds receipts for ids
whose ``send()`` has not returned yet, so the gateway knows the id before the receipt.
:class:`IdStyle` carries what the matches taught over to ids no longer remembered.
Ids are the SMSC's text: filing, looking up and translating them never raises.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from connectors.smpp.receipt import id_forms, numeric

_HEX = frozenset("0123456789abcdef")


def index_forms(message_id: str) -> list[str]:
    """The keys an id is filed under: as given (lower case) and without leading zeros."""
    raw = message_id.strip().lower()
    forms = [raw]
    if not numeric(raw):
        return forms
    if raw.isdigit():
        forms.append(str(int(raw)))
    if raw and _HEX.issuperset(raw):
        forms.append(f"{int(raw, 16):x}")
    return forms


class IdStyle:
    """How this SMSC spells ids in receipts compared with submit_sm_resp, learned from
    the receipts matched in memory, to translate receipts for ids no longer remembered
    (sent before a restart) with one lookup instead of guesses at the store."""

    def __init__(self) -> None:
        # (receipt base, submit base): None = taken as it is; 10 or 16 = read and rewritten
        self.bases: tuple[int, int] | None = None
        self.upper = False
        self.width = 0  # zero-padded to this width (0: no padding)

    def learn(self, receipt_id: str, carrier_id: str) -> None:
        """Remember the relation between a receipt's id and the submit id it matched."""
        r, c = receipt_id.strip().lower(), carrier_id.lower()
        self.upper = carrier_id != c and carrier_id == carrier_id.upper()
        self.width = len(c) if c.startswith("0") else 0
        self.bases = None
        if r == c:
            return
        for rb, cb in ((10, 10), (16, 16), (10, 16), (16, 10)):
            try:
                if int(r, rb) == int(c, cb):
                    self.bases = (rb, cb)
                    return
            except ValueError:
                continue

    def translate(self, receipt_id: str) -> str:
        """The submit id a receipt's id most likely means, by the learned style."""
        r = receipt_id.strip()
        if self.bases is None:
            out = r
        else:
            try:
                n = int(r, self.bases[0])
                out = f"{n:x}" if self.bases[1] == 16 else str(n)
            except ValueError:  # not a number in that base, or too long to write in decimal
                return r
            out = out.zfill(self.width)
        return out.upper() if self.upper else out


class SubmittedIds:
    """Recent submit ids (bounded) and the receipts waiting for their ``send()``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._index: OrderedDict[str, str] = OrderedDict()
        self._open: set[str] = set()  # submitted, send() not returned yet
        self._waiters: dict[str, asyncio.Future[None]] = {}

    def add(self, carrier_id: str) -> None:
        """File ``carrier_id``; receipts for it wait until :meth:`release`."""
        index = self._index
        for form in index_forms(carrier_id):
            index[form] = carrier_id
        while len(index) > self.capacity:
            index.popitem(last=False)
        self._open.add(carrier_id)

    def release(self, carrier_ids: list[str]) -> None:
        """``send()`` returned these ids to the gateway: let their receipts through."""
        for cid in carrier_ids:
            self._open.discard(cid)
            fut = self._waiters.pop(cid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    def lookup(self, receipt_id: str) -> str | None:
        """The submit id a receipt's id means: exact spelling first, then hex ↔ decimal."""
        for form in id_forms(receipt_id):
            hit = self._index.get(form)
            if hit is not None:
                return hit
        return None

    async def released(self, carrier_id: str, timeout: float) -> None:
        """Wait (at most ``timeout``) until ``send()`` of ``carrier_id`` has returned."""
        if carrier_id not in self._open:
            return
        fut = self._waiters.get(carrier_id)
        if fut is None:
            fut = self._waiters[carrier_id] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(fut)
        except TimeoutError:
            self._open.discard(carrier_id)
            self._waiters.pop(carrier_id, None)


class RateLimiter:
    """At most ``rate`` acquisitions per second (GCRA), with a burst of ``rate / 20``.

    A slot is reserved before sleeping, so concurrent senders queue fairly.
    """

    def __init__(
        self,
        rate: float,
        *,
        time: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.set_rate(rate)
        self._time = time
        self._sleep = sleep
        self._tat = 0.0

    def set_rate(self, rate: float) -> None:
        """Change the rate (0: unlimited) from the next acquisition on."""
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.tolerance = self.interval * max(0.0, rate / 20 - 1)

    async def acquire(self) -> None:
        """Wait for the next slot (immediately when the rate is unlimited)."""
        if not self.interval:
            return
        now = self._time() if self._time else asyncio.get_running_loop().time()
        tat = max(self._tat, now)
        self._tat = tat + self.interval
        wait = tat - now - self.tolerance
        if wait > 1e-9:  # float noise must not turn the burst's last slot into a sleep
            await self._sleep(wait)
