"""A remote fax machine on loopback: SIP + UDPTL/RTP + spandsp, for tests and the demo.

    sim = FaxSimulator(gateway="sip:127.0.0.1:5080")
    await sim.start()                       # listens on sim.uri (the gateway's proxy)
    sim.behaviour = Behaviour(busy=True)    # or no_answer, refuse_t38, loss, reject
    ...                                     # the gateway dials numbers through sim.uri
    sim.received[0].tiff                    # what arrived, with its FaxResult
    result = await sim.send_fax("+4930123456", Path("pages.tif"), caller="+4940111111")
    await sim.stop()

Every number answers (unless told otherwise). ``loop_numbers``: a fax received for one of
them is sent back to the gateway as an inbound fax to that number (the demo's members).
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fax.t38.call_media import FaxCallMedia, read_pages
from fax.t38.endpoint import Address, MediaEndpoint
from fax.t38.params import FaxJob, FaxResult, PageProgress
from fax.t38.sdp import MediaKind
from fax.t38.sip.config import UserAgentConfig
from fax.t38.sip.errors import CallFailed
from fax.t38.sip.incoming import Answer, IncomingCall, Reject
from fax.t38.sip.outcome import CallOutcome
from fax.t38.sip.ua import UserAgent
from fax.t38.ticker import Ticker

__all__ = ["Behaviour", "FaxSimulator", "LossyEndpoint", "ReceivedFax"]

log = logging.getLogger("fax.simulator")
# A page's MCF is a V.21 frame after a 1 s preamble: it reaches the sender about 1.18 s
# of media time after the receiver's phase D (measured on T.38 and on G.711 alike). The
# BYE waits 2 s, so the page is confirmed at both ends before the call is cut.
HANGUP_DELAY_SAMPLES = 16000  # 2 s at 8 kHz


class LossyEndpoint(MediaEndpoint):
    """A media endpoint that drops a share ``loss`` of the datagrams it sends."""

    loss = 0.0
    rng = random.Random(7)
    dropped = 0

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send, unless this datagram is one of those lost."""
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return
        super().sendto(data, addr)


@dataclass
class Behaviour:
    """How the simulated fax machine takes calls.

    ``busy``: 486; ``no_answer``: rings until the caller gives up; ``reject``: answers
    with that status (404, 603, …); ``refuse_t38``: audio only (488 to a re-INVITE to
    T.38); ``loss``: share of its media datagrams lost; ``ring_for``: seconds of 180
    before the 200; ``hangup_after_pages``: BYE once that many pages arrived.
    """

    busy: bool = False
    no_answer: bool = False
    reject: int | None = None
    refuse_t38: bool = False
    loss: float = 0.0
    ring_for: float = 0.0
    hangup_after_pages: int | None = None


@dataclass
class ReceivedFax:
    """One call the simulator took: who called which number, and what arrived."""

    number: str
    caller: str | None
    result: FaxResult | None
    tiff: bytes | None
    media: list[MediaKind] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """T.30 ended OK with pages."""
        return self.result is not None and self.result.success


class FaxSimulator:
    """The far end of the ``sip_t38`` connector: a fax machine for every number."""

    def __init__(
        self,
        *,
        gateway: str | None = None,
        listen: str = "127.0.0.1:0",
        station_id: str = "SIMULATOR",
        ticker: Ticker | None = None,
        loop_numbers: tuple[str, ...] = (),
        max_calls: int = 1000,
    ) -> None:
        self.gateway = gateway
        self.listen = listen
        self.station_id = station_id
        self.ticker = ticker
        self.loop_numbers = frozenset(loop_numbers)
        self.max_calls = max_calls
        self.behaviour = Behaviour()
        self.received: list[ReceivedFax] = []
        self.calls_seen: list[IncomingCall] = []
        self.ua: UserAgent | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="fax-sim-")
        self._seq = 0
        self._tasks: set[asyncio.Task[object]] = set()
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        """Listen for the gateway's calls (UDP and TCP)."""
        self.ua = UserAgent(UserAgentConfig(proxy=self.gateway, listen=self.listen,
                                            max_calls=self.max_calls, from_user="sim"),
                            on_incoming=self._incoming)
        await self.ua.start()

    @property
    def port(self) -> int:
        """The SIP port it listens on."""
        assert self.ua is not None
        return self.ua.listen_address("udp")[1]

    @property
    def uri(self) -> str:
        """Its SIP URI: the ``proxy`` of a connector that dials through it."""
        return f"sip:127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Hang up, stop listening, drop what it kept on disk."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ua is not None:
            await self.ua.aclose()
            self.ua = None
        self._dir.cleanup()

    def _path(self, what: str) -> Path:
        self._seq += 1
        return Path(self._dir.name) / f"{what}-{self._seq}.tif"

    async def _media(self, job: FaxJob, *, armed: bool,
                     on_page: Callable[[PageProgress], None] | None = None) -> FaxCallMedia:
        b = self.behaviour
        endpoint = await LossyEndpoint.bind("127.0.0.1")
        assert isinstance(endpoint, LossyEndpoint)
        endpoint.loss = b.loss
        return FaxCallMedia(endpoint, job, t38=not b.refuse_t38, armed=armed,
                            ticker=self.ticker, on_page=on_page)

    # -- taking calls ----------------------------------------------------------------

    async def _incoming(self, incoming: IncomingCall) -> Answer | Reject:
        self.calls_seen.append(incoming)
        b = self.behaviour
        if b.busy:
            return Reject(486)
        if b.reject is not None:
            return Reject(b.reject)
        path = self._path("rx")
        cut = b.hangup_after_pages

        def on_page(p: PageProgress) -> None:
            if cut is not None and p.page == cut:
                self._spawn(self._hang_up_soon(incoming, media))

        media = await self._media(FaxJob(receive_file=path, ident=self.station_id), armed=True,
                                  on_page=on_page)
        number = incoming.number or incoming.to_user or ""
        ring = 3600.0 if b.no_answer else b.ring_for
        self._spawn(self._receive(incoming, media, path, number))
        return Answer(media, ring_for=ring)

    async def _hang_up_soon(self, incoming: IncomingCall, media: FaxCallMedia) -> None:
        """BYE 2 s of media time later: the page's MCF reaches the sender first."""
        session = media.session
        if session is not None:
            until = session.samples + HANGUP_DELAY_SAMPLES
            while session.samples < until and media.result is None:  # noqa: ASYNC110
                await asyncio.sleep(0.001)
        await incoming.call.hangup()

    async def _receive(self, incoming: IncomingCall, media: FaxCallMedia, path: Path,
                       number: str) -> None:
        try:
            result = await media.wait_result()
            if incoming.call.outcome is None:
                await incoming.call.hangup()
        finally:
            media.close()
        fax = ReceivedFax(number, incoming.caller, result,
                          read_pages(path) if result is not None else None,
                          [n.kind for n in media.history])
        if media.history:  # answered: a fax call, whatever came of it
            self.received.append(fax)
        async with self._changed:
            self._changed.notify_all()
        if fax.ok and number in self.loop_numbers and fax.tiff is not None:
            back = self._path("loop")
            back.write_bytes(fax.tiff)
            await self.send_fax(number, back, caller=incoming.caller or "anonymous")

    async def wait_received(self, count: int = 1, timeout: float = 60.0) -> list[ReceivedFax]:
        """Wait until ``count`` calls were taken and ended (bounded)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.received) >= count)
        return self.received

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending to the gateway --------------------------------------------------------

    async def send_fax(self, number: str, tiff: Path, *, caller: str,
                       t38: bool = True) -> tuple[FaxResult | None, CallOutcome | None]:
        """Fax ``tiff`` to ``number`` at the gateway (audio first, then a re-INVITE to T.38
        unless ``t38`` is False or the behaviour refuses it); the report and how the call
        ended (the report is None when the call was never answered)."""
        assert self.ua is not None, "start() first"
        media = await self._media(FaxJob(send_file=tiff, ident=self.station_id), armed=False)
        try:
            call = await self.ua.call(number, media, from_user=caller)
            try:
                await call.wait_answered()
            except CallFailed as exc:
                return None, exc.outcome
            if t38 and not self.behaviour.refuse_t38:
                await call.reinvite_to_t38()
            media.arm()
            result = await media.wait_result()
            outcome = await call.hangup()
            return result, outcome
        finally:
            media.close()


async def _send_once(gateway: str, to: str, caller: str, tiff: Path, t38: bool) -> int:
    sim = FaxSimulator(gateway=gateway)
    await sim.start()
    try:
        result, outcome = await sim.send_fax(to, tiff, caller=caller, t38=t38)
    finally:
        await sim.stop()
    if result is None:
        print(f"not answered: {outcome}")
        return 1
    print(f"{result.words}: {result.pages_transferred} page(s), {result.bit_rate} bit/s, "
          f"ECM {'on' if result.ecm else 'off'}, remote CSI {result.remote_ident!r}")
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m fax.simulator send --gateway sip:127.0.0.1:5080 --to NUMBER FILE.tif``:
    fax a TIFF-F file to the gateway as a remote fax machine would."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fax.simulator",
                                     description="A simulated remote fax machine.")
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="fax a TIFF-F file to the gateway")
    send.add_argument("--gateway", required=True, help="the gateway's SIP URI")
    send.add_argument("--to", required=True, help="the number dialled (a member's fax)")
    send.add_argument("--from", dest="caller", default="+4940123456", help="our number")
    send.add_argument("--audio", action="store_true", help="stay on G.711 (no T.38)")
    send.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    return asyncio.run(_send_once(args.gateway, args.to, args.caller, args.file,
                                  not args.audio))


if __name__ == "__main__":
    raise SystemExit(main())
