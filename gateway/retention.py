"""Retention: the logs that grow with traffic are pruned in the background, in small
batches, so the cost of a message stays flat as the store grows ([retention] in the
configuration: ``gateway.config.Retention``).

Pruned: the event log (older than ``events_days``), expired idempotency records (a
response is replayed for ``idempotency_hours``; Redis expires them by itself), and, by
the webhooks extension with :func:`drain`, finished webhook deliveries with their attempt
logs (``webhook_deliveries_days``). Kept for good: messages, conversations, the quota
ledger.

Each batch is one short store write of at most ``batch`` rows (SQLite holds its write lock
for that long only, by an index), and the sweep yields to the event loop between batches;
a sweep stops after ``MAX_BATCHES`` and the next one (every ``jobs.SWEEP_INTERVAL``) goes
on. Every worker process sweeps; batches of two processes do not conflict (each deletes
what is old by then). Public: extensions prune their own logs with :func:`drain`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.extensions import Host

log = logging.getLogger("gateway.retention")
MAX_BATCHES = 200  # batches per sweep and log; the next sweep goes on from there
# One batch: (a time, the most rows to delete) → how many it deleted.
Prune = Callable[[datetime, int], Awaitable[int]]


async def drain(what: str, prune: Prune, at: datetime, batch: int) -> int:
    """Call ``prune(at, batch)`` until a batch deletes fewer than ``batch`` rows (or
    ``MAX_BATCHES`` ran), yielding between batches; how many rows it deleted in all."""
    total = 0
    for _ in range(MAX_BATCHES):
        deleted = await prune(at, batch)
        total += deleted
        if deleted < batch:
            break
        await asyncio.sleep(0)  # the sends of this process go first
    if total:
        log.info("retention: %d %s pruned", total, what)
    return total


async def prune_core(host: Host) -> dict[str, int]:
    """One sweep over the core's logs: the event log and idempotency records."""
    keep = host.settings.retention
    now = host.clock.now()
    store = host.store
    return {
        "events": await drain("events", store.prune_events, now - keep.events, keep.batch),
        "idempotency": await drain(
            "idempotency records", store.prune_idempotency, now, keep.batch
        ),
    }


def housekeeping(host: Host) -> list[Callable[[], Awaitable[object]]]:
    """The retention sweep bound to ``host`` (the job workers run it with the core's
    housekeeping)."""
    return [functools.partial(prune_core, host)]
