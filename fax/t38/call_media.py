"""A call's media for the SIP user agent: one UDP endpoint, a fax session on whatever
stream SDP agreed, switched when a re-INVITE moves the call from audio to T.38.

    media = await FaxCallMedia.bind(job, media_ip="127.0.0.1")
    call = await ua.call(number, media)        # offers audio on media's port
    await call.wait_answered()
    await call.reinvite_to_t38()               # False: the far end stays on audio
    media.arm()                                # T.30 starts on the agreed stream
    result = await media.wait_result()         # FaxResult, or None: no session ran
    await call.hangup(); media.close()

A side that should start T.30 as soon as the call is up (the answering side) is bound
``armed=True``. Audio and image share the endpoint's port (one socket per call).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from fax.t38.endpoint import MediaEndpoint
from fax.t38.params import FaxJob, FaxResult, T38Params
from fax.t38.sdp import LocalMedia, MediaKind, Negotiated
from fax.t38.sdp.session_params import session_params
from fax.t38.session import AudioFaxSession, FaxSession, PageCallback, T38Session
from fax.t38.sip.media import SdpMediaHandler
from fax.t38.sip.outcome import CallOutcome
from fax.t38.ticker import Ticker

__all__ = ["FaxCallMedia"]

log = logging.getLogger("fax.t38.call_media")


class FaxCallMedia(SdpMediaHandler):
    """A `MediaHandler` that runs one fax job over the call's agreed stream."""

    prefer = MediaKind.IMAGE

    def __init__(
        self,
        endpoint: MediaEndpoint,
        job: FaxJob,
        *,
        t38: bool = True,
        audio: bool = True,
        armed: bool = False,
        calling: bool | None = None,
        ticker: Ticker | None = None,
        on_page: PageCallback | None = None,
        redundancy: int = 3,
    ) -> None:
        port = endpoint.port
        super().__init__(LocalMedia(endpoint.local_address[0],
                                    audio_port=port if audio else None,
                                    image_port=port if t38 else None))
        self.endpoint = endpoint
        self.job = job
        self.armed = armed
        self.calling = calling
        self.ticker = ticker
        self.on_page = on_page
        self.redundancy = redundancy
        self.session: FaxSession | None = None
        self.sessions: list[FaxSession] = []
        self._result: asyncio.Future[FaxResult | None] = (
            asyncio.get_running_loop().create_future())
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def bind(
        cls, job: FaxJob, *, media_ip: str = "127.0.0.1",
        media_ports: str | range | tuple[int, int] | None = None, **kw: Any,
    ) -> FaxCallMedia:
        """Bind an endpoint on ``media_ip`` / ``media_ports`` and build the handler on it."""
        endpoint = await MediaEndpoint.bind(media_ip, media_ports)
        return cls(endpoint, job, **kw)

    @property
    def kind(self) -> MediaKind | None:
        """The stream the fax runs on (None before the answer)."""
        return self.negotiated.kind if self.negotiated is not None else None

    async def media_changed(self, negotiated: Negotiated) -> None:
        """Start T.30 on the new stream when armed (a switch replaces the running session)."""
        await super().media_changed(negotiated)
        if self.armed:
            self._start(negotiated)

    def arm(self) -> None:
        """Start T.30 now on the agreed stream (or as soon as there is one)."""
        self.armed = True
        if self.negotiated is not None and self.session is None:
            self._start(self.negotiated)

    def _start(self, negotiated: Negotiated) -> None:
        if self._result.done():
            return
        old = self.session
        if old is not None:
            if old.kind == ("t38" if negotiated.kind is MediaKind.IMAGE else "g711") \
                    and old.remote == (negotiated.remote_address, negotiated.remote_port):
                return
            self.session = None  # replaced: its end is not the call's result
            old.close()
        params = session_params(negotiated, redundancy=self.redundancy)
        remote = (negotiated.remote_address, negotiated.remote_port)
        session: FaxSession
        if isinstance(params, T38Params):
            session = T38Session(self.endpoint, remote, self.job, params, calling=self.calling,
                                 ticker=self.ticker, on_page=self.on_page)
        else:
            session = AudioFaxSession(self.endpoint, remote, self.job, params,
                                      calling=self.calling, ticker=self.ticker,
                                      on_page=self.on_page)
        self.session = session
        self.sessions.append(session)
        session.start()
        self._watch = asyncio.ensure_future(self._wait(session))

    async def _wait(self, session: FaxSession) -> None:
        try:
            result: FaxResult | None = await session.wait()
        except Exception:
            log.exception("fax session failed")
            result = None
        if self.session is session and not self._result.done():
            self._result.set_result(result)

    async def ended(self, outcome: CallOutcome) -> None:
        """The call is over: T.30 ends now (unfinished means the call dropped)."""
        await super().ended(outcome)
        if self.session is not None:
            self.session.call_ended()
            await asyncio.sleep(0)  # let the session's waiter record the result
        elif not self._result.done():
            self._result.set_result(None)

    async def wait_result(self) -> FaxResult | None:
        """The fax's transmission report once T.30 ended; None when no session ever ran."""
        return await asyncio.shield(self._result)

    @property
    def result(self) -> FaxResult | None:
        """The report, if T.30 has ended."""
        return self._result.result() if self._result.done() else None

    def close(self) -> None:
        """Stop the session (if any), free its C state and close the socket."""
        for session in self.sessions:
            session.close()
        if not self._result.done():
            self._result.set_result(None)
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()
        self.endpoint.close()


def read_pages(path: Path) -> bytes | None:
    """The received TIFF's bytes (None when spandsp wrote no file)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
