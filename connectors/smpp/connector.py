"""The ``smpp`` connector: SMS through SMPP 3.4 transceiver binds to an SMSC.

Options (the connector table's own keys; ``host`` and ``system_id`` are required):

=======================  ========  ==========================================================
key                      default   meaning
=======================  ========  ==========================================================
host, port               —, 2775   the SMSC
system_id, password      —, ""     bind credentials (at most 15 / 8 characters)
system_type              ""        bind_transceiver system_type
binds                    1         transceiver sessions in parallel (throughput): the total
                                   over every process sharing the store (bind slots)
bind_lease               15        seconds a process holds a bind slot without renewing it
                                   (a dead process's binds are taken over after this)
window                   10        unanswered requests allowed per bind
rate                     100       submit_sm per second over all binds (a process sends its
                                   share by the bind slots it holds); 0 = unlimited
long_messages            "udh"     ``udh`` (UDH 05 00 03), ``sar`` (SAR TLVs) or
                                   ``payload`` (the whole text in one message_payload)
gsm7_packing             false     send (and read) data_coding 0 as packed septets
source_ton, source_npi   auto      E.164 sender → 1/1, alphanumeric → 5/0, digits → 0/1
dest_ton, dest_npi       1, 1      destination (E.164 without '+')
registered_delivery      1         ask for delivery receipts (on every part)
service_type             ""        submit_sm service_type
enquire_link_interval    30        seconds of silence before an enquire_link
response_timeout         10        seconds to wait for any response
connect_timeout          5         seconds to wait for the TCP connection
reconnect_min/max        0.5, 30   reconnect backoff (doubling, jitter) after a lost bind
throttle_pause           1         seconds a bind pauses after ESME_RTHROTTLED/RMSGQFUL
throttle_retries         5         throttled answers per part before send() gives up
send_wait                2         seconds send() waits for a bind to come back
inbound_workers          16        deliver_sm handled concurrently
reassembly_timeout       300       seconds an incomplete concatenated message waits
inbound_dedupe_window    600       seconds an identical inbound message counts as a
                                   redelivery (see ``reassembly.py``); 0 = never
=======================  ========  ==========================================================

Bind slots: ``binds`` is what the carrier allows in all, so a process binds only on a
slot of the store's ``Coordination`` (``ConnectorContext.shared``), which it renews every
third of ``bind_lease``; a slot it cannot renew (the store says another process holds it
now) ends its session. A process that dies stops renewing, and another takes its slots
over after ``bind_lease``. Processes sharing one Redis store spread the binds: a process
takes one slot at once and each further one only a ``bind_lease`` after its last, so that
processes started together each get one first. A process that holds no slot is unhealthy
for sends (the send job waits and any process may take it then); an API-only process
(``ConnectorContext.sends`` False) binds nothing. On SQLite (one process) every slot is
this process's at once.

``send()`` submits one submit_sm per part (see ``content.py``) and returns the first
part's message id as ``carrier_id`` and every part's in ``part_ids``. command_status
values are mapped in ``status.py``. While no bind is up, ``send()`` waits ``send_wait``
seconds and then raises ``RetryableError`` (``AuthError`` after a refused bind): the
durable send job tries again, nothing is lost and nothing was written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from connectors.base import (
    AuthError,
    ConnectorContext,
    ConnectorError,
    ErrorCode,
    Health,
    NotReadyError,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
    register,
)
from connectors.smpp import pdu as P
from connectors.smpp.content import build_submits
from connectors.smpp.inbound import InboundProcessor
from connectors.smpp.options import parse_options
from connectors.smpp.session import BindError, ResponseTimeout, Session, SessionClosed
from connectors.smpp.status import AUTH, THROTTLE, classify, error_for
from connectors.smpp.tracking import RateLimiter, SubmittedIds
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from gateway.retry import backoff

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.models import JobHandler

log = logging.getLogger("connectors.smpp")

# A session that lived at least this long resets the reconnect backoff.
STABLE_SESSION = 5.0
# Attempts of one part on sessions that closed before the part left this process.
MAX_REROUTES = 10


class _Bind:
    """One of the connector's transceiver sessions and its state."""

    __slots__ = (
        "auth_failed",
        "index",
        "last_error",
        "next_try",
        "paused_until",
        "renewed",
        "session",
        "slot",
        "task",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.slot: int | None = None  # the bind slot held in the store (see the docstring)
        self.renewed = 0.0  # loop time the slot was last claimed or renewed
        self.session: Session | None = None
        self.paused_until = 0.0
        self.last_error: str | None = None
        self.auth_failed = False
        self.next_try = 0.0  # loop time of the next bind attempt while the bind is down
        self.task: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self.session is not None and self.session.bound


class SmppConnector:
    """SMS over SMPP 3.4 (kind ``smpp``)."""

    kind = "smpp"

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.id = config.id
        self.channels = config.channels
        self.numbers = config.numbers
        self.ctx = ctx
        if config.channels != {"sms"}:
            raise ConfigError(
                f"connectors[{config.id}].channels: an smpp connector carries sms only"
            )
        self.opts = parse_options(config.id, dict(config.options))
        self._binds = [_Bind(i) for i in range(self.opts.binds)]
        self._ids = SubmittedIds()
        self._inbound = InboundProcessor(self.id, ctx, self.opts, self._ids)
        self._limiter = RateLimiter(self.opts.rate)
        self._up: asyncio.Event | None = None
        self._slots = f"smpp:{self.id}"
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_claim = float("-inf")
        self._renewer: asyncio.Task[None] | None = None
        self._rr = 0
        self._started = False
        self._closing = False
        # Parts of a multi-part message accepted before a later part failed: a retry of
        # the send in this process resumes after them instead of sending them again.
        self._partial: OrderedDict[str, dict[int, str]] = OrderedDict()

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind a session on every bind slot this process could claim; at least one must
        come up (``NotReadyError``/``AuthError``), unless other processes hold every slot
        (then this one waits for a slot). An API-only process binds nothing."""
        if self._started:
            return
        self._closing = False
        self._up = asyncio.Event()
        if not self.ctx.sends:
            self._started = True
            return
        self._inbound.start()
        for b in self._binds:
            if not await self._claim(b):
                break
        claimed = [b for b in self._binds if b.slot is not None]
        results = await asyncio.gather(*(self._bind(b) for b in claimed), return_exceptions=True)
        if claimed and not any(b.up for b in self._binds):
            await self._release_slots()
            await self._inbound.aclose()
            raise self._start_error([r for r in results if isinstance(r, BaseException)])
        loop = asyncio.get_running_loop()
        for b in self._binds:
            b.task = loop.create_task(self._supervise(b), name=f"{self.id}-bind-{b.index}")
        self._renewer = loop.create_task(self._renew_slots(), name=f"{self.id}-bind-slots")
        self._started = True

    # -- bind slots (see the module docstring) -------------------------------------------
    async def _claim(self, b: _Bind) -> bool:
        """Hold a bind slot for ``b``: whether it has one now."""
        if b.slot is not None:
            return True
        shared = self.ctx.shared
        loop = asyncio.get_running_loop()
        holds = any(x.slot is not None for x in self._binds)
        recent = loop.time() - self._last_claim < self.opts.bind_lease
        if shared.spans_processes and holds and recent:
            return False  # leave other processes a slot first
        try:
            slot = await shared.claim_slot(
                self._slots, self.opts.binds, self._owner, self.opts.bind_lease
            )
        except Exception as exc:
            b.last_error = f"cannot claim a bind slot: {_describe(exc)}"
            log.warning("%s: %s", self.id, b.last_error)
            return False
        if slot is None:
            return False
        b.slot, b.renewed, self._last_claim = slot, loop.time(), loop.time()
        log.info("%s: bind slot %d of %d claimed", self.id, slot, self.opts.binds)
        self._share_rate()
        return True

    def _share_rate(self) -> None:
        """``rate`` is for all binds: this process sends its share, by the slots it holds
        (several processes together stay within it)."""
        held = sum(1 for b in self._binds if b.slot is not None)
        if self.opts.rate > 0 and held:
            self._limiter.set_rate(self.opts.rate * held / self.opts.binds)

    async def _renew_slots(self) -> None:
        """Renew the slots held every third of ``bind_lease``; a slot lost (or not
        renewed within the lease, the store being unreachable) ends its session."""
        loop = asyncio.get_running_loop()
        while not self._closing:
            await asyncio.sleep(self.opts.bind_lease / 3)
            for b in self._binds:
                if b.slot is None:
                    continue
                try:
                    kept = await self.ctx.shared.renew_slot(
                        self._slots, b.slot, self._owner, self.opts.bind_lease
                    )
                except Exception as exc:
                    kept = loop.time() - b.renewed < self.opts.bind_lease * 2 / 3
                    log.warning("%s: bind slot %d not renewed: %s", self.id, b.slot,
                                _describe(exc))  # fmt: skip
                else:
                    if kept:
                        b.renewed = loop.time()
                if not kept:
                    log.error("%s: bind slot %d lost; closing its session", self.id, b.slot)
                    b.slot = None
                    self._share_rate()
                    if b.session is not None:
                        b.session.abort("bind slot lost to another process")

    async def _release_slots(self) -> None:
        for b in self._binds:
            if b.slot is not None:
                with contextlib.suppress(Exception):
                    await self.ctx.shared.release_slot(self._slots, b.slot, self._owner)
                b.slot = None

    def _start_error(self, errors: list[BaseException]) -> ConnectorError:
        where = f"SMSC {self.opts.host}:{self.opts.port}"
        for exc in errors:
            if isinstance(exc, BindError) and classify(exc.status)[0] == AUTH:
                return AuthError(
                    f"{where} refused bind_transceiver as {self.opts.system_id!r}: "
                    f"{P.status_name(exc.status)}",
                    carrier_code=P.status_name(exc.status),
                )
        exc = errors[0] if errors else RuntimeError("no bind configured")
        return NotReadyError(f"{where} not ready: {_describe(exc)}", carrier_code=None)

    async def _bind(self, b: _Bind) -> None:
        o = self.opts
        try:
            session = await Session.connect(
                o.host,
                o.port,
                o.system_id,
                o.password,
                o.system_type,
                connect_timeout=o.connect_timeout,
                window=o.window,
                response_timeout=o.response_timeout,
                enquire_link_interval=o.enquire_link_interval,
                on_deliver=self._inbound.put,
                name=f"{self.id}#{b.index}",
            )
        except BaseException as exc:
            b.last_error = _describe(exc)
            b.auth_failed = isinstance(exc, BindError) and classify(exc.status)[0] == AUTH
            raise
        b.session, b.paused_until, b.last_error, b.auth_failed = session, 0.0, None, False
        if self._up is not None:
            self._up.set()
        log.info("%s: bind %d up to %s:%d", self.id, b.index, o.host, o.port)

    async def _supervise(self, b: _Bind) -> None:
        """Keep one bind up: wait for its end, then reconnect with backoff (with jitter,
        so that the binds of many gateways do not all knock at once)."""
        loop = asyncio.get_running_loop()
        waits = 0  # since the last long-lived session
        while not self._closing:
            if b.slot is None and b.session is None and not await self._claim(b):
                b.next_try = loop.time() + self.opts.bind_lease / 3
                await asyncio.sleep(self.opts.bind_lease / 3)
                continue
            failed = None
            session = b.session
            if session is not None:
                since = loop.time()
                await session.wait_closed()
                b.session = None
                self._refresh_up()
                if self._closing:
                    return
                b.last_error = session.close_reason
                log.warning("%s: bind %d lost: %s", self.id, b.index, session.close_reason)
                if loop.time() - since >= STABLE_SESSION:
                    waits = 0
                    continue  # a long-lived session: reconnect at once
            else:
                try:
                    await self._bind(b)
                    continue
                except Exception as exc:
                    failed = _describe(exc)
            waits += 1
            delay = backoff(waits, base=self.opts.reconnect_min, cap=self.opts.reconnect_max)
            if failed is not None:
                log.warning("%s: bind %d failed: %s (next try in %.1f s)",
                            self.id, b.index, failed, delay)  # fmt: skip
            b.next_try = loop.time() + delay
            await asyncio.sleep(delay)

    def _refresh_up(self) -> None:
        if self._up is not None:
            if any(b.up for b in self._binds):
                self._up.set()
            else:
                self._up.clear()

    async def aclose(self) -> None:
        """Unbind every session and stop the background tasks."""
        self._closing = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for b in self._binds:
            if b.task is not None:
                b.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await b.task
                b.task = None
        sessions = [b.session for b in self._binds if b.session is not None]
        await asyncio.gather(*(s.unbind() for s in sessions), return_exceptions=True)
        for b in self._binds:
            b.session = None
        await self._release_slots()
        await self._inbound.aclose()
        self._started = False

    def routes(self) -> Sequence[BaseRoute]:
        """No webhooks: everything arrives over the binds."""
        return []

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """No durable jobs of its own."""
        return {}

    def health(self) -> Health:
        """Healthy while at least one bind is up (an API-only process: always)."""
        if not self.ctx.sends:
            return Health(True, "no binds in an API-only process (the workers hold them)")
        up = sum(b.up for b in self._binds)
        if up:
            return Health(True, f"{up}/{len(self._binds)} binds up")
        if self._started and all(b.slot is None for b in self._binds):
            return Health(
                False,
                f"every one of the {self.opts.binds} bind slots is held by another process",
                retry_after=self.opts.bind_lease / 3,
            )
        errors = {b.last_error for b in self._binds if b.last_error}
        detail = "no bind up" + (f": {'; '.join(sorted(errors))}" if errors else "")
        if any(b.auth_failed for b in self._binds):
            return Health(False, detail)  # refused credentials: the operator must act
        # Sends are worth trying again when the next bind attempt is due, not in a minute.
        now = asyncio.get_running_loop().time()
        due = min((b.next_try for b in self._binds), default=now)
        return Health(False, detail, retry_after=max(0.0, due - now))

    # -- sending -------------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        """Submit every part of ``message``; the first part's id is the carrier id."""
        if not message.text:
            raise PermanentError("an SMS needs text", code=ErrorCode.CONTENT_INVALID)
        try:
            submits = build_submits(message.id, message.from_, message.to, message.text, self.opts)
        except ValueError as exc:  # a sender or text the PDU fields cannot hold
            raise PermanentError(str(exc), code=ErrorCode.CONTENT_INVALID) from None
        done = self._partial.pop(message.id, {})
        try:
            for i, body in enumerate(submits.bodies):
                if i not in done:
                    cid = await self._submit(body)
                    self._ids.add(cid)
                    done[i] = cid
        except ConnectorError:
            if done:
                self._partial[message.id] = done
                while len(self._partial) > 10_000:
                    self._partial.popitem(last=False)
            raise
        finally:
            self._ids.release(list(done.values()))
        ids = [done[i] for i in range(len(submits.bodies))]
        return SendResult(
            carrier_id=ids[0],
            segments=submits.parts,
            meta={"data_coding": submits.data_coding, "submits": len(ids)},
            part_ids=ids if len(ids) > 1 else [],
        )

    async def _submit(self, body: bytes) -> str:
        """One submit_sm, on any bind: its message id, or a ``ConnectorError``."""
        throttled = reroutes = 0
        while True:
            b = await self._pick()
            await self._limiter.acquire()
            session = b.session
            if session is None or not session.bound:
                continue  # lost while waiting for a slot: pick again
            try:
                resp = await session.request(P.SUBMIT_SM, body)
            except SessionClosed as exc:
                reroutes += 1
                if not exc.maybe_sent and reroutes <= MAX_REROUTES:
                    continue  # it never left this process: another bind may take it
                # THE AMBIGUITY: the connection ended after submit_sm was written but
                # before its submit_sm_resp came. The SMSC may or may not have taken it.
                # We raise a retryable error, so the durable job sends it again: a
                # message is never silently lost, at the risk of a duplicate in this one
                # case (a multi-part resend reuses its concatenation reference, so a
                # handset can merge it). The error says so in the message's history.
                raise RetryableError(
                    f"connection to the SMSC ended before submit_sm was answered "
                    f"({exc}); it is sent again and may arrive twice",
                    code=ErrorCode.TIMEOUT,
                ) from None
            except ResponseTimeout as exc:
                # The same ambiguity as above, on a live connection: retried likewise.
                raise RetryableError(
                    f"{exc} within {self.opts.response_timeout} s; it is sent again and "
                    "may arrive twice",
                    code=ErrorCode.TIMEOUT,
                ) from None
            status = resp.status
            if resp.command_id == P.GENERIC_NACK and status == P.ESME_ROK:
                status = P.ESME_RSYSERR
            if status == P.ESME_ROK:
                return str(resp.fields.get("message_id") or self._no_id())
            kind, _ = classify(status)
            if kind == THROTTLE:
                throttled += 1
                b.paused_until = asyncio.get_running_loop().time() + self.opts.throttle_pause
                log.info(
                    "%s: bind %d throttled (%s); pausing %.1f s",
                    self.id,
                    b.index,
                    P.status_name(status),
                    self.opts.throttle_pause,
                )
                if throttled <= self.opts.throttle_retries:
                    continue
                raise error_for(status, "submit_sm", retry_after=self.opts.throttle_pause)
            if status == P.ESME_RINVBNDSTS:
                session.abort("the SMSC says the session is not bound")
            raise error_for(status, "submit_sm")

    def _no_id(self) -> str:
        # Accepted without an id: not a failure (a retry would send it twice), but no
        # receipt can ever be matched to it.
        log.warning("%s: submit_sm_resp without message_id; receipts cannot be matched", self.id)
        return f"noid-{uuid.uuid4().hex}"

    async def _pick(self) -> _Bind:
        """A bound, unpaused bind, preferring one with a free window slot."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        n = len(self._binds)
        while True:
            now = loop.time()
            best: _Bind | None = None
            resume: float | None = None
            for k in range(n):
                b = self._binds[(self._rr + k) % n]
                session = b.session
                if session is None or not session.bound:
                    continue
                if b.paused_until > now:
                    resume = b.paused_until if resume is None else min(resume, b.paused_until)
                    continue
                if session.free_slots > 0:
                    best = b
                    break
                if best is None:
                    best = b
            if best is not None:
                self._rr = (best.index + 1) % n
                return best
            if resume is not None:
                await asyncio.sleep(resume - now)
                continue
            if not self._started or self._closing:
                raise RetryableError(f"connector {self.id} is not running")
            if deadline is None:
                deadline = now + self.opts.send_wait
            if now >= deadline:
                raise self._down_error()
            self._refresh_up()
            assert self._up is not None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - now):
                    await self._up.wait()

    def _down_error(self) -> ConnectorError:
        detail = self.health().detail
        if any(b.auth_failed for b in self._binds):
            return AuthError(f"SMSC refuses the bind: {detail}", carrier_code=None)
        return RetryableError(
            f"SMSC {self.opts.host}:{self.opts.port} unavailable ({detail})",
            code=ErrorCode.CARRIER_ERROR,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


register("smpp", SmppConnector)
