"""Incoming fax calls: screen the dialled number and the caller, answer, receive the
pages into a TIFF, hand the fax to the inbound path with its transmission report."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from connectors.base import ConnectorContext, InboundAttachment, InboundMessage
from connectors.sip_t38.options import SipT38Options
from connectors.sip_t38.sending import report
from fax.t38.call_media import FaxCallMedia, read_pages
from fax.t38.endpoint import MediaPortsExhaustedError
from fax.t38.params import FaxJob
from fax.t38.sip.incoming import Answer, IncomingCall, Reject
from fax.t38.ticker import Ticker
from gateway.numbers import normalize

log = logging.getLogger("connectors.sip_t38")


def e164(text: str | None, region: str) -> str | None:
    """``text`` (a SIP user part: E.164 or national) as E.164; None when it is not a number."""
    if not text:
        return None
    try:
        return normalize(text, region)
    except ValueError:
        return None


def candidates(text: str | None, region: str) -> list[str]:
    """The E.164 numbers a dialled user part may mean: as written (E.164 or national) and,
    for bare digits not starting with 0, as E.164 without its ``+`` (trunks send both)."""
    out = [n for n in (e164(text, region),) if n is not None]
    if text and text.isdigit() and not text.startswith("0"):
        plus = e164("+" + text, region)
        if plus is not None and plus not in out:
            out.append(plus)
    return out


class Receiver:
    """The receiving half of a ``sip_t38`` connector (the UA's ``on_incoming``)."""

    def __init__(self, connector_id: str, opts: SipT38Options, context: ConnectorContext,
                 ticker: Ticker | None) -> None:
        self.connector_id = connector_id
        self.opts = opts
        self.context = context
        self.ticker = ticker
        self.dir = tempfile.TemporaryDirectory(prefix="fax-rx-")
        self.tasks: set[asyncio.Task[Any]] = set()
        self.on_line_free: Callable[[], Awaitable[None]] | None = None
        self._seq = 0

    async def __call__(self, incoming: IncomingCall) -> Answer | Reject:
        """Answer a fax to a member's number; 404 unknown number, 603 refused caller."""
        region = self.opts.region
        dialled = [*candidates(incoming.number, region), *candidates(incoming.to_user, region)]
        number = None
        for candidate in dict.fromkeys(dialled):
            if await self._known(candidate):
                number = candidate
                break
        if number is None:
            return Reject(404)
        caller = e164(incoming.caller, region) or (incoming.caller or "anonymous")
        verdict = "ok" if self.context.screen is None else await self.context.screen.screen(
            "fax", number, caller)
        if verdict == "unknown":
            return Reject(404)
        if verdict != "ok":
            return Reject(603)
        self._seq += 1
        path = Path(self.dir.name) / f"rx-{self._seq}.tif"
        job = FaxJob(receive_file=path, ident=(self.opts.station_id or number)[:20])
        try:
            media = await FaxCallMedia.bind(job, media_ip=self.opts.media_ip,
                                            media_ports=self.opts.media_ports, armed=True,
                                            ticker=self.ticker)
        except (MediaPortsExhaustedError, OSError) as exc:
            log.warning("fax call to %s refused: no media port (%s)", number, exc)
            return Reject(503)
        self._spawn(self._receive(incoming, media, path, number, caller))
        return Answer(media)

    async def _known(self, number: str) -> bool:
        if self.context.screen is None:
            return True
        return await self.context.screen.screen("fax", number, "") != "unknown"

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _receive(self, incoming: IncomingCall, media: FaxCallMedia, path: Path,
                       number: str, caller: str) -> None:
        try:
            result = await media.wait_result()
            if incoming.call.outcome is None:
                await incoming.call.hangup()
        finally:
            media.close()
            if self.on_line_free is not None:
                await self.on_line_free()
        if result is None or result.pages_transferred == 0:
            log.info("fax call %s to %s: no pages (%s)", incoming.call.call_id, number,
                     result.words if result else "no session")
            path.unlink(missing_ok=True)
            return
        data = read_pages(path)
        path.unlink(missing_ok=True)
        if data is None:
            return
        message = InboundMessage(
            connector_id=self.connector_id, channel="fax", carrier_id=incoming.call.call_id,
            from_=caller, to=number, text=None, received_at=self.context.clock.now(),
            attachments=[InboundAttachment("image/tiff", data, filename="fax.tif")],
            segments=result.pages_transferred,
            meta={"fax": {"pages": result.pages_transferred,
                          "report": report(result, media.kind, None)}},
        )
        try:
            await self.context.sink.inbound(message)
        except Exception:
            log.exception("fax call %s to %s: storing the received fax failed",
                          incoming.call.call_id, number)

    async def aclose(self) -> None:
        """Stop receiving; drop the scratch files."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.dir.cleanup()
