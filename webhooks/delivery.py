"""The delivery engine: from the store's event log to signed POSTs, durably.

**Fan-out.** One process at a time holds the fan-out lease (in the store, renewed while it
works; another process takes over :data:`FANOUT_LEASE` after it dies). It reads the event
log after the fan-out cursor in batches of :data:`FANOUT_BATCH` and turns each event into
one delivery per matching endpoint (``endpoints.matches``: enabled, same team, type in
the filter, created after the endpoint). The deliveries and the new cursor are written
in ONE store operation that first compares the cursor and the endpoints' version with the
ones the batch was built from: a crash before it loses nothing (the batch is read again),
a second process with the same batch writes nothing, and an endpoint changed meanwhile
makes the batch be built again.

**webhook-id.** A delivery's id is derived from the event id and the endpoint id
(:func:`delivery_id`), so every attempt, a redelivery after a crash, a manual retry and a
replay of the same event to the same endpoint carry the same ``webhook-id``: receivers
deduplicate on it (Standard Webhooks' idempotency key).

**Order.** Events of one conversation reach one endpoint in the order of the event log:
they form a *lane* (endpoint + conversation) in which only the oldest pending delivery is
ever attempted; the next one waits until it succeeded or finally failed, so an earlier
failing event holds the later ones back (for up to the whole retry schedule). The same
holds for the ``quota.threshold`` events of one member (80 % before 100 %). Events
without either (``forward.*``) are not ordered. A manual retry or a replay sends a
delivery outside its lane: it is a deliberate resend, not part of the live sequence.

**Retries.** ``[webhooks] retry_schedule`` lists the seconds before each attempt:
``[0, 5, 300, 1800, 7200, 18000, 36000, 36000]`` by default — the first attempt right
away, then a retry 5 s after it failed, 5 min after that, and so on; a delivery whose last
attempt failed is ``failed``. Success is a 2xx answer within ``[webhooks] timeout``;
anything else fails the attempt (a 3xx too: redirects are not followed, the Location is
logged). A ``Retry-After`` (seconds or an HTTP date) on a failed answer can lengthen the
wait before the next attempt up to the longest delay of the schedule (10 h by default);
it never shortens it, nor adds attempts.

**Disabling.** An endpoint whose attempts failed continuously for ``[webhooks]
disable_after_seconds`` (5 days; measured from its first failed attempt after the last
success) is disabled, with ``disabled_reason`` saying why. Deliveries of a disabled or
deleted endpoint fail at their next attempt without a request; after re-enabling, a
replay sends what was missed.

**Crashes.** Each attempt holds a lease (``[webhooks] lease_seconds``); if its process
dies, the delivery is attempted again once the lease expired: at least once, same id.

**Throughput.** Events are read in batches, the deliveries of a batch are written in one
operation, new lane heads are leased by that same operation and sent at once, up to
``[webhooks] concurrency`` attempts run concurrently per process over kept-alive
connections, and the stores group the attempts' writes (one commit / pipeline per tick).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway import jsoncodec
from gateway.events import QUOTA_THRESHOLD
from gateway.extensions import Host
from gateway.models import Event, iso
from gateway.retention import drain
from gateway.retry import Failing, retry_after_seconds
from gateway.store.event_waiters import grown_or_stopped
from webhooks.client import AttemptError, Client
from webhooks.endpoints import matches
from webhooks.models import (
    DELIVERY_FAILED,
    DELIVERY_PENDING,
    DELIVERY_SUCCEEDED,
    Delivery,
    DeliveryOutcome,
    WebhookEndpoint,
)
from webhooks.settings import webhook_settings
from webhooks.signing import active_secrets, signature_header
from webhooks.storage import WEBHOOK_STORE
from webhooks.targets import Target, TargetError, TargetRefused, parse_target

log = logging.getLogger("webhooks")
FANOUT_BATCH = 1000
FANOUT_LEASE = timedelta(seconds=10)
# Seconds the fan-out holder waits for the log's announcement at most (it renews its lease
# at half of FANOUT_LEASE), and between a non-holder's looks at the lease (a dead holder's
# lease runs FANOUT_LEASE anyway): idle processes cost next to nothing.
FANOUT_IDLE = 1.0
FANOUT_STANDBY = FANOUT_LEASE.total_seconds() / 4
# Idle looks for due deliveries back off from poll_interval to this (seconds): a retry
# comes due at most this late; fresh events and promoted lanes wake the loop at once.
DUE_IDLE_MAX = 0.5
EVENT_CACHE = 20_000
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """The ``webhook-id`` of an event for an endpoint: 130 bits of their SHA-256."""
    value = int.from_bytes(hashlib.sha256(f"{event_id}:{endpoint_id}".encode()).digest()[:17])
    value >>= 6
    return "whd_" + "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def lane_of(endpoint_id: str, event: Event) -> str | None:
    """The ordering lane of ``event`` at an endpoint, or None (not ordered)."""
    conversation = event.data.get("conversation_id")
    if isinstance(conversation, str) and conversation:
        return f"{endpoint_id}:{conversation}"
    member = event.data.get("member_id")
    if event.type == QUOTA_THRESHOLD and isinstance(member, str):
        return f"{endpoint_id}:quota:{member}"
    return None


def new_delivery(event: Event, endpoint: WebhookEndpoint, now: datetime) -> Delivery:
    """The delivery of ``event`` to ``endpoint`` (not stored yet)."""
    ident = delivery_id(event.id, endpoint.id)
    lane = lane_of(endpoint.id, event) or ident
    return Delivery(ident, endpoint.id, endpoint.team_id, event.id, event.type, event.seq, lane,
                    now)  # fmt: skip


def payload(event: Event) -> bytes:
    """The body of every delivery of ``event``: its type, time and data (exactly as signed)."""
    return jsoncodec.dumpb(
        {"type": event.type, "timestamp": iso(event.created_at), "data": event.data}
    )


def next_delay(schedule: Sequence[float], attempts: int, retry_after: float | None) -> float | None:
    """Seconds to wait after ``attempts`` failed attempts, or None when none is left."""
    if attempts >= len(schedule):
        return None
    delay = schedule[attempts]
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def _duration(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> Target:
    return parse_target(url)


PRUNE_INTERVAL = 60.0  # seconds between retention sweeps of the delivery log


class Engine:
    """Fans events out to deliveries and attempts them; see the module docstring.

    ``run`` does it until stopped; tests drive the steps themselves: ``fanout_once``,
    ``deliver_due`` and ``drain`` (attempts run as tasks; ``drain`` waits for them).
    """

    def __init__(self, rt: Host, *, client: Client | None = None, owner: str | None = None) -> None:
        self.rt = rt
        self.settings = webhook_settings(rt.settings)
        self.hooks = rt.role(WEBHOOK_STORE)
        self.client = client or Client(allow_private=self.settings.allow_private_targets)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoints: dict[str, WebhookEndpoint] = {}
        self._by_team: dict[str, list[WebhookEndpoint]] = {}
        self._version = -1
        self._checked = 0.0
        self._events: OrderedDict[int, Event] = OrderedDict()
        self._cursor: int | None = None
        self._holding = False  # whether this process held the fan-out lease at its last look
        self._lease_until: datetime | None = None
        self._wake = asyncio.Event()
        metrics = rt.metrics
        metrics.describe(
            "gateway_webhook_attempts_total", "counter", "Webhook delivery attempts by outcome."
        )
        metrics.describe(
            "gateway_webhook_events_total", "counter", "Events read from the log by the fan-out."
        )
        metrics.describe(
            "gateway_webhook_endpoints_disabled_total",
            "counter",
            "Endpoints disabled after failing too long.",
        )

    @property
    def free(self) -> int:
        """How many more attempts may start now."""
        return max(0, self.settings.concurrency - len(self._tasks))

    # -- loops -----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Fan out and deliver until ``stop`` is set; attempts in flight finish first."""
        loops = [
            asyncio.create_task(self._fanout_loop(stop), name="webhooks-fanout"),
            asyncio.create_task(self._due_loop(stop), name="webhooks-due"),
            asyncio.create_task(self._prune_loop(stop), name="webhooks-retention"),
        ]
        try:
            await stop.wait()
        finally:
            self._wake.set()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.drain()
            await self.client.aclose()

    async def prune_once(self) -> int:
        """Delete the deliveries that finished longer ago than [retention]
        ``webhook_deliveries_days``, in small batches; how many."""
        keep = self.rt.settings.retention
        before = self.rt.clock.now() - keep.webhook_deliveries
        return await drain("webhook deliveries", self.hooks.prune_deliveries, before, keep.batch)

    async def _prune_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.prune_once()
            except Exception:
                log.exception("pruning the webhook delivery log failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PRUNE_INTERVAL)

    async def _fanout_loop(self, stop: asyncio.Event) -> None:
        failing = Failing("webhook fan-out", self.settings.poll_interval, log)
        waiter = self.rt.store.event_waiter()
        try:
            while not stop.is_set():
                try:
                    read = await self.fanout_once()
                    failing.ok()
                    if read >= FANOUT_BATCH:
                        # Behind on a long event log: let the process's requests in between
                        # batches (the SQLite store answers without suspending).
                        await asyncio.sleep(0)
                        continue
                    if self._holding and self._cursor is not None:  # caught up: until it grows
                        await grown_or_stopped(waiter, self._cursor, FANOUT_IDLE, stop)
                        continue
                    # Another process fans out, or the cursor or the endpoints moved.
                    wait = FANOUT_STANDBY if not self._holding else self.settings.poll_interval
                except Exception as exc:
                    wait = failing.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await waiter.aclose()

    async def _due_loop(self, stop: asyncio.Event) -> None:
        failing = Failing("leasing due webhook deliveries", self.settings.poll_interval, log)
        idle = self.settings.poll_interval
        while not stop.is_set():
            try:
                leased = await self.deliver_due()
            except Exception as exc:
                wait = failing.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            failing.ok()
            if leased == 0 or self.free == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle)
                woken = self._wake.is_set()
                self._wake.clear()
                # Nothing due and nobody rang: look less often, up to DUE_IDLE_MAX.
                quiet = not leased and not woken
                floor = self.settings.poll_interval
                idle = min(max(idle * 2, floor), max(DUE_IDLE_MAX, floor)) if quiet else floor
            else:
                idle = self.settings.poll_interval

    async def drain(self) -> None:
        """Wait until every attempt started so far has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- steps -----------------------------------------------------------------------------
    def _token(self) -> str:
        return f"{self.owner}:{uuid.uuid4().hex}"

    async def _refresh(self, force: bool) -> int:
        """The endpoints' version, reloading them when it changed (checked at most once a
        poll interval unless ``force``)."""
        mono = time.monotonic()
        if not force and mono - self._checked < self.settings.poll_interval:
            return self._version
        self._checked = mono
        hooks = self.hooks
        version = await hooks.endpoints_version()  # before the list: see fanout
        if version != self._version:
            endpoints = await hooks.list_endpoints(None)
            self._endpoints = {e.id: e for e in endpoints}
            self._by_team = {}
            for e in endpoints:
                self._by_team.setdefault(e.team_id, []).append(e)
            self._version = version
        return version

    async def fanout_once(self) -> int:
        """Turn the next batch of events into deliveries; the number of events read."""
        rt = self.rt
        now = rt.clock.now()
        if (
            self._cursor is None
            or self._lease_until is None
            or now >= self._lease_until - (FANOUT_LEASE / 2)
        ):
            cursor = await self.hooks.lease_fanout(self.owner, now, FANOUT_LEASE)
            self._holding = cursor is not None
            if cursor is None:  # another process fans out
                self._cursor = None
                return 0
            self._cursor, self._lease_until = cursor, now + FANOUT_LEASE
        events = await rt.store.list_events(self._cursor, FANOUT_BATCH)
        if not events:
            return 0
        version = await self._refresh(force=True)
        deliveries = []
        wanted = []
        for event in events:
            targets = [e for e in self._by_team.get(event.team_id, ()) if matches(e, event)]
            if targets:
                wanted.append(event)
                deliveries += [new_delivery(event, e, now) for e in targets]
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        leased = await self.hooks.fanout(
            self._cursor, events[-1].seq, version, deliveries, self._token(), lease_until,
            self.free, now,
        )  # fmt: skip
        if leased is None:  # the cursor or the endpoints moved: read both again
            self._cursor, self._version = None, -1
            return 0
        self._cursor = events[-1].seq
        rt.metrics.inc("gateway_webhook_events_total", len(events))
        for event in wanted:
            self._remember(event)
        for d in leased:
            self._start(d)
        return len(events)

    async def deliver_due(self) -> int:
        """Lease the deliveries that are due (as many as there is room for) and start their
        attempts; the number started."""
        free = self.free
        if free == 0:
            return 0
        now = self.rt.clock.now()
        lease_until = now + timedelta(seconds=self.settings.lease_seconds)
        leased = await self.hooks.lease_deliveries(now, self._token(), lease_until, free)
        missing = [d.seq for d in leased if d.seq not in self._events]
        if missing:
            for event in await self.rt.store.events_at(missing):
                self._remember(event)
        for d in leased:
            self._start(d)
        return len(leased)

    def _remember(self, event: Event) -> None:
        self._events[event.seq] = event
        if len(self._events) > EVENT_CACHE:
            self._events.popitem(last=False)

    def _start(self, delivery: Delivery) -> None:
        task = asyncio.create_task(self._attempt(delivery), name=f"webhook-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook attempt crashed", exc_info=task.exception())

    # -- one attempt -----------------------------------------------------------------------
    async def _attempt(self, d: Delivery) -> None:
        rt = self.rt
        await self._refresh(force=False)
        endpoint = self._endpoints.get(d.endpoint_id)
        if endpoint is None:
            await self._refresh(force=True)  # created a moment ago in another process?
            endpoint = self._endpoints.get(d.endpoint_id)
        event = self._events.get(d.seq)
        if event is None:
            found = await rt.store.events_at([d.seq])
            event = found[0] if found else None
        now = rt.clock.now()
        if endpoint is None or not endpoint.enabled or event is None:
            if endpoint is None:
                reason = "the endpoint was deleted"
            elif not endpoint.enabled:
                reason = "the endpoint is disabled" + (
                    f" ({endpoint.disabled_reason})" if endpoint.disabled_reason else ""
                )
            else:
                reason = f"event {d.event_id} is no longer in the event log"
            record = {"at": iso(now), "attempt": d.attempts, "error": reason}
            outcome = DeliveryOutcome(DELIVERY_FAILED, record)
            if await self.hooks.finish_delivery(d, outcome, now) is not None:
                rt.metrics.inc("gateway_webhook_attempts_total", outcome="skipped")
            return
        await self._send(d, endpoint, event)

    async def _send(self, d: Delivery, endpoint: WebhookEndpoint, event: Event) -> None:
        rt = self.rt
        body = payload(event)
        now = rt.clock.now()
        stamp = int(now.timestamp())
        signature = signature_header(active_secrets(endpoint, now), d.id, stamp, body)
        headers = [
            ("webhook-id", d.id),
            ("webhook-timestamp", str(stamp)),
            ("webhook-signature", signature),
        ]
        record: dict[str, Any] = {"at": iso(now), "attempt": d.attempts, "status_code": None}
        status: int | None = None
        retry_after = None
        error: str | None = None
        started = time.perf_counter()
        try:
            response = await self.client.post(
                _target(endpoint.url), body, headers, self.settings.timeout
            )
        except (TargetRefused, TargetError) as exc:
            error = f"refused: {exc}"
        except AttemptError as exc:
            error, record["remote_address"] = exc.message, exc.remote
        except TimeoutError:
            error = f"no complete answer within {self.settings.timeout:g} s"
        except OSError as exc:  # e.g. the resolver failing in an unexpected way
            error = f"{type(exc).__name__}: {exc}"
        else:
            status = response.status
            record["status_code"] = status
            record["remote_address"] = response.remote
            record["response_body"] = response.body.decode("utf-8", "replace")
            record["response_truncated"] = response.truncated
            if not 200 <= status < 300:
                error = f"HTTP {status}"
                if 300 <= status < 400:
                    location = response.headers.get("location")
                    record["location"] = location
                    error += f" redirect to {location}; redirects are not followed"
                retry_after = retry_after_seconds(response.headers.get("retry-after"), now)
        record["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
        record["error"] = error
        done = rt.clock.now()
        if error is None:
            outcome = DeliveryOutcome(DELIVERY_SUCCEEDED, record, None, True)
        else:
            if retry_after is not None:
                record["retry_after"] = retry_after
            delay = next_delay(self.settings.retry_schedule, d.attempts, retry_after)
            if delay is None:
                outcome = DeliveryOutcome(DELIVERY_FAILED, record, None, False)
            else:
                retry_at = done + timedelta(seconds=delay)
                record["next_attempt_at"] = iso(retry_at)
                outcome = DeliveryOutcome(DELIVERY_PENDING, record, retry_at, False)
        result = await self.hooks.finish_delivery(d, outcome, done)
        if result is None:
            log.info("delivery %s: the lease expired before the attempt ended", d.id)
            return
        kind = {DELIVERY_SUCCEEDED: "succeeded", DELIVERY_FAILED: "failed"}.get(
            outcome.status, "retry"
        )
        rt.metrics.inc("gateway_webhook_attempts_total", outcome=kind)
        if result.promoted:
            self._wake.set()
        limit = self.settings.disable_after_seconds
        since = result.failing_since
        if error is not None and since is not None and (done - since).total_seconds() >= limit:
            await self._disable(endpoint.id, since, error, done)

    async def _disable(self, endpoint_id: str, since: datetime, error: str, now: datetime) -> None:
        hooks = self.hooks
        for _ in range(5):
            endpoint = await hooks.get_endpoint(endpoint_id)
            if endpoint is None or not endpoint.enabled:
                return
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"disabled by the gateway at {iso(now)}: every delivery attempt since "
                f"{iso(since)} failed (the limit is "
                f"{_duration(self.settings.disable_after_seconds)}); last error: {error}"
            )
            endpoint.updated_at = now
            endpoint.version += 1
            if await hooks.update_endpoint(endpoint):
                self._endpoints[endpoint_id] = endpoint  # at once in this process
                log.warning(
                    "webhook endpoint %s disabled: %s", endpoint_id, endpoint.disabled_reason
                )
                self.rt.metrics.inc("gateway_webhook_endpoints_disabled_total")
                return
