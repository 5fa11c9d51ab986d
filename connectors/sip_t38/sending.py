"""One outbound fax: wait for a line and the destination, dial, switch to T.38 (or stay
on audio), transmit from the first unconfirmed page, report progress, judge the end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

from connectors.base import (
    AuthError,
    ConnectorContext,
    ErrorCode,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
)
from connectors.sip_t38.options import SipT38Options
from connectors.sip_t38.outcomes import Step, Verdict, for_call, for_fax, ladder
from connectors.sip_t38.state import FaxState, tiff_of
from fax.t38.call_media import FaxCallMedia
from fax.t38.endpoint import MediaPortsExhaustedError
from fax.t38.params import FaxJob, FaxResult, PageProgress
from fax.t38.sdp import MediaKind
from fax.t38.sip.errors import CallFailed, SipError
from fax.t38.sip.ua import UserAgent
from fax.t38.ticker import Ticker
from gateway.events import FAX_PAGE
from gateway.models import iso

log = logging.getLogger("connectors.sip_t38")


def report(result: FaxResult, media: MediaKind | None, step: Step | None) -> dict[str, Any]:
    """The transmission report as ``meta["fax"]["report"]`` holds it."""
    out: dict[str, Any] = {
        "pages": result.pages_transferred,
        "bit_rate": result.bit_rate,
        "ecm": result.ecm,
        "resolution": "fine" if result.fine else "standard",
        "remote_csi": result.remote_ident,
        "duration_s": round(result.duration, 1),
        "result": result.words,
        "t30_code": result.completion_code,
        "media": "t38" if media is MediaKind.IMAGE else "g711",
    }
    if step is not None:
        out["settings"] = step.words()
    return out


class Sender:
    """The sending half of a ``sip_t38`` connector."""

    def __init__(self, ua: UserAgent, opts: SipT38Options, context: ConnectorContext,
                 ticker: Ticker | None, lines_in_use: Callable[[], int]) -> None:
        self.ua = ua
        self.opts = opts
        self.context = context
        self.ticker = ticker
        self.lines_in_use = lines_in_use
        self.steps = ladder(opts)
        self.fallback: dict[str, int] = {}  # destination → ladder step that last worked
        self.dialling: set[str] = set()  # destinations with a fax under way
        self.reserved = 0  # lines taken by sends not yet dialled
        self._freed = asyncio.Condition()

    async def _progress(self, message_id: str, fax: dict[str, Any], event: dict[str, Any]
                        | None = None) -> None:
        hook = self.context.progress
        if hook is None:
            return
        try:
            await hook.progress(message_id, {"fax": fax}, FAX_PAGE if event else None, event)
        except Exception:
            log.exception("fax %s: recording progress failed", message_id)

    async def _take_line(self, to: str) -> None:
        async def free() -> None:
            async with self._freed:
                await self._freed.wait_for(
                    lambda: to not in self.dialling
                    and self.lines_in_use() + self.reserved < self.opts.max_calls)
        try:
            async with asyncio.timeout(self.opts.line_wait):
                while True:
                    await free()
                    if to not in self.dialling and \
                            self.lines_in_use() + self.reserved < self.opts.max_calls:
                        break
        except TimeoutError:
            raise RetryableError(f"no free line for {to} within {self.opts.line_wait:g} s",
                                 retry_after=self.opts.line_wait,
                                 code=ErrorCode.THROTTLED) from None
        self.dialling.add(to)
        self.reserved += 1

    def _unreserve(self, held: list[bool]) -> None:
        """The line is now a call of the UA (or was never used): stop reserving it."""
        if held[0]:
            held[0] = False
            self.reserved -= 1

    async def release(self) -> None:
        """A line or a destination became free: wake the sends that wait."""
        async with self._freed:
            self._freed.notify_all()

    async def send(self, message: OutboundMessage) -> SendResult:
        """Transmit the message's TIFF; SendResult once every page is confirmed."""
        tiff = tiff_of(message)
        state = FaxState.of(message.meta)
        state.step = min(max(state.step, self.fallback.get(message.to, 0)), len(self.steps) - 1)
        await self._take_line(message.to)
        held = [True]
        try:
            return await self._attempt(message, Path(tiff.path), state, held)
        finally:
            self._unreserve(held)
            self.dialling.discard(message.to)
            await self.release()

    async def _attempt(self, message: OutboundMessage, tiff: Path,
                       state: FaxState, held: list[bool]) -> SendResult:
        opts = self.opts
        step = self.steps[state.step]
        pages_before = state.pages_sent
        pending: list[asyncio.Task[None]] = []

        def on_page(p: PageProgress) -> None:
            if not p.confirmed:
                return
            page = pages_before + p.page
            pages = pages_before + (p.pages or 0)
            state.pages_sent = page
            pending.append(asyncio.ensure_future(self._progress(
                message.id, {"pages_sent": page, "pages": pages, "phase": "sending"},
                {"page": page, "pages": pages})))

        job = FaxJob(send_file=tiff, ident=(opts.station_id or message.from_)[:20],
                     header=opts.header, ecm=step.ecm, modems=step.modems,
                     start_page=state.pages_sent)
        try:
            media = await FaxCallMedia.bind(job, media_ip=opts.media_ip,
                                            media_ports=opts.media_ports, ticker=self.ticker,
                                            on_page=on_page, calling=True)
        except (MediaPortsExhaustedError, OSError) as exc:
            raise RetryableError(f"no media port: {exc}", retry_after=opts.retry_protocol,
                                 code=ErrorCode.THROTTLED) from exc
        try:
            if state.first_dial is None:
                state.first_dial = iso(self.context.clock.now())
            state.dials += 1
            await self._progress(message.id, {"phase": "dialling", **state.meta(),
                                               "next_try": None, "retry_reason": None})
            try:
                call = await self.ua.call(message.to, media, from_user=message.from_,
                                          ring_timeout=opts.ring_timeout)
            finally:
                self._unreserve(held)
            try:
                await call.wait_answered()
            except CallFailed as exc:
                await self._failed(message, state, for_call(exc.outcome), None)
            if step.t38:
                switched = await call.reinvite_to_t38()
                if not switched and opts.t38_only:
                    await call.hangup()
                    raise PermanentError("the far end refuses T.38 and t38_only is set",
                                         code=ErrorCode.REJECTED, carrier_code="sip:488")
            await self._progress(message.id, {"phase": "sending"})
            media.arm()
            result = await media.wait_result()
            if call.outcome is None:
                await call.hangup()
            outcome = await call.wait_ended()
        except SipError as exc:
            await self._failed(message, state, Verdict(
                "retry", f"SIP: {exc}", ErrorCode.UNREACHABLE, "sip:transport"), None)
        finally:
            media.close()
        if pending:
            await asyncio.gather(*pending)
        if result is None:
            await self._failed(message, state, for_call(outcome), None)
        fax_report = report(result, media.kind, step)
        if result.success:
            self.fallback[message.to] = state.step
            pages = pages_before + result.pages_transferred
            state.pages_sent = pages
            fax = {**(message.meta.get("fax") or {}), **state.meta(), "pages": pages,
                   "phase": None, "next_try": None, "retry_reason": None,
                   "report": {**fax_report, "pages": pages}}
            return SendResult(carrier_id=call.call_id, meta={"fax": fax})
        error = result.error
        assert error is not None
        verdict = for_fax(error)
        await self._failed(message, state, verdict, fax_report)

    async def _failed(self, message: OutboundMessage, state: FaxState, verdict: Verdict,
                      fax_report: dict[str, Any] | None) -> NoReturn:
        """Record the attempt and raise the error its verdict calls for."""
        opts = self.opts
        if verdict.counts_as_try:
            state.tries += 1
        if verdict.kind == "protocol" and state.step + 1 < len(self.steps):
            state.step += 1
            self.fallback[message.to] = state.step
        wait = verdict.retry_after(opts)
        now = self.context.clock.now()
        fax: dict[str, Any] = {**state.meta(), "phase": None, "next_try": None,
                               "retry_reason": None}
        if fax_report is not None:
            fax["report"] = fax_report
        exhausted = (state.tries >= opts.max_tries and "tries")  \
            or (state.dials >= opts.max_dials and "dials") \
            or (state.age(now) + wait > opts.max_age and "time")
        if verdict.kind == "auth":
            await self._progress(message.id, fax)
            raise AuthError(verdict.message, carrier_code=verdict.carrier_code)
        if verdict.kind == "final" or exhausted:
            await self._progress(message.id, fax)
            why = verdict.message if verdict.kind == "final" else (
                f"gave up after {state.tries} tries and {state.dials} dials "
                f"({exhausted} exhausted); last: {verdict.message}")
            raise PermanentError(why, code=verdict.code, carrier_code=verdict.carrier_code)
        # Read by the message's view (``fax``), so the ``message.status`` event of the move
        # back to ``queued`` says why and when the next try is (status mails, the portal).
        fax["next_try"] = iso(now + timedelta(seconds=wait))
        fax["retry_reason"] = verdict.words
        await self._progress(message.id, fax)
        raise RetryableError(verdict.message, retry_after=wait, code=verdict.code,
                             carrier_code=verdict.carrier_code, scheduled=True)

