"""Media sessions: T.30 through spandsp over UDPTL (``T38Session``) or G.711 (``AudioFaxSession``).

A session is created on a bound ``MediaEndpoint`` with the far end's address and the
parameters SDP negotiated, is started, and ends with a ``FaxResult``::

    endpoint = await MediaEndpoint.bind(media_ip, media_ports)   # port for the SDP
    session = T38Session(endpoint, remote, job, params)           # after offer/answer
    session.start()
    result = await session.wait()
    session.close()

The ticker (one per process, see ``ticker.py``) calls ``tick(samples)`` every 20 ms with
the real elapsed samples; datagrams are handled as they arrive. The SIP layer calls
``call_ended()`` on BYE and ``cancel()`` to give up; both finish T.30 at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Final

from fax.t38 import spandsp
from fax.t38.endpoint import Address, MediaEndpoint
from fax.t38.g711 import Codec
from fax.t38.params import AudioParams, FaxJob, FaxResult, MediaParams, PageProgress, T38Params
from fax.t38.rtp import JitterBuffer, RtpError, RtpPacket, RtpSender
from fax.t38.ticker import SAMPLE_RATE, MediaTicker, Ticker
from fax.t38.udptl import UdptlError, UdptlReceiver, UdptlSender

__all__ = ["AudioFaxSession", "FaxSession", "T38Session", "start_session"]

log = logging.getLogger("fax.t38.session")

PageCallback = Callable[[PageProgress], None]
_INCHES_PER_METRE: Final = 0.0254
# How long a session keeps running after T.30's phase E, so its last frames (DCN and
# their repeats) reach the far end.
_GRACE_SAMPLES: Final = SAMPLE_RATE // 4
_RX_HOLD: Final = SAMPLE_RATE // 5  # 200 ms
_ids = itertools.count(1)
# t38_packet_categories_e: control data end (2) and image data end (4).
_ONE_END_COPY: Final = {2: 1, 4: 1}


def _dpi(pixels_per_metre: int) -> int:
    return round(pixels_per_metre * _INCHES_PER_METRE)


class FaxSession(ABC):
    """What both kinds of session share: T.30 setup, phase handlers, the result."""

    kind = "fax"

    def __init__(
        self,
        endpoint: MediaEndpoint,
        remote: Address,
        job: FaxJob,
        *,
        calling: bool | None = None,
        ticker: Ticker | None = None,
        on_page: PageCallback | None = None,
    ) -> None:
        try:
            ipaddress.ip_address(remote[0])
        except ValueError:
            # A host name here would mean a blocking DNS lookup on every sendto.
            raise ValueError(f"the far end's media address must be an IP: {remote[0]!r}") from None
        self.endpoint = endpoint
        self.remote = remote
        self.job = job
        self.calling = job.sending if calling is None else calling
        self._ticker = ticker
        self.on_page = on_page
        self.tag = f"{self.kind}#{next(_ids)}"
        self.samples = 0  # time this session has run, in samples
        self.ignored = 0  # datagrams from elsewhere, or not parseable
        self._future: asyncio.Future[FaxResult] = asyncio.get_running_loop().create_future()
        self._code: int | None = None  # T.30 completion code, once phase E ran
        self._final: spandsp.TransferStats | None = None
        self._remote_ident = ""
        self._cancelled = False
        self._pages = 0
        self._bad_rows = 0
        self._grace = 0
        self._started = False
        self._closed = False

    # -- set-up ---------------------------------------------------------------------

    def _setup_t30(self, t30: spandsp.T30) -> None:
        job = self.job
        if job.send_file is not None:
            t30.set_tx_file(job.send_file, job.start_page if job.start_page > 0 else -1)
        if job.receive_file is not None:
            t30.set_rx_file(job.receive_file)
        if job.ident:
            t30.set_tx_ident(job.ident)
        if job.header:
            t30.set_tx_page_header_info(job.header)
        t30.set_ecm(job.ecm)
        t30.set_supported_compressions(job.compressions)
        t30.set_supported_resolutions(job.resolutions)
        t30.set_supported_image_sizes(
            spandsp.ImageSize.WIDTH_215MM
            | spandsp.ImageSize.WIDTH_255MM
            | spandsp.ImageSize.WIDTH_303MM
            | spandsp.ImageSize.UNLIMITED_LENGTH
            | spandsp.ImageSize.A4_LENGTH
            | spandsp.ImageSize.B4_LENGTH
            | spandsp.ImageSize.US_LETTER_LENGTH
            | spandsp.ImageSize.US_LEGAL_LENGTH
        )
        t30.set_phase_b_handler(self._phase_b)
        t30.set_phase_d_handler(self._phase_d)
        t30.set_phase_e_handler(self._phase_e)
        self._t30 = t30

    def start(self) -> None:
        """Attach to the endpoint and start ticking."""
        if self._closed:
            raise RuntimeError(f"{self.tag} is closed")
        if self._started:
            return
        self._started = True
        self.endpoint.attach(self._on_datagram)
        if self._ticker is None:
            self._ticker = MediaTicker.shared()
        self._ticker.add(self)

    # -- spandsp callbacks --------------------------------------------------------

    def _phase_b(self, fcf: int) -> None:
        log.debug("%s phase B: %s", self.tag, spandsp.frame_type_to_str(fcf))

    def _phase_d(self, fcf: int) -> None:
        stats = self._t30.stats()
        done = stats.pages_tx if self.job.sending else stats.pages_rx
        name = spandsp.frame_type_to_str(fcf)
        log.debug("%s phase D: %s, %d pages", self.tag, name, done)
        total = self._pages_expected(stats) if self.job.sending else None
        if done > self._pages:
            if not self.job.sending:
                self._bad_rows += stats.bad_rows
            for page in range(self._pages + 1, done + 1):
                self._progress(PageProgress(page, total, True, self.job.sending))
            self._pages = done
        elif self.job.sending and name in ("RTN", "PIN"):
            self._progress(PageProgress(done + 1, total, False, True))

    def _progress(self, progress: PageProgress) -> None:
        if self.on_page is not None:
            try:
                self.on_page(progress)
            except Exception:
                log.exception("%s: page progress callback failed", self.tag)

    def _pages_expected(self, stats: spandsp.TransferStats) -> int:
        return max(0, stats.pages_in_file - self.job.start_page)

    def _phase_e(self, code: int) -> None:
        self._code = code
        self._final = self._t30.stats()
        self._remote_ident = self._t30.rx_ident()
        log.info(
            "%s phase E: %s (%d), %d pages",
            self.tag,
            spandsp.completion_code_to_str(code),
            code,
            self._final.pages_tx if self.job.sending else self._final.pages_rx,
        )

    # -- driving ------------------------------------------------------------------

    def tick(self, samples: int) -> None:
        """Advance by ``samples`` of elapsed time (called by the ticker)."""
        self.samples += samples
        if self._run(samples) or self._code is not None:
            self._grace += samples
            if self._code is not None and (self._grace >= _GRACE_SAMPLES or self._drained()):
                self._finish()

    @abstractmethod
    def _run(self, samples: int) -> bool:
        """Advance the media by ``samples``; True once spandsp says T.30 is over."""

    def _drained(self) -> bool:
        return False

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        if addr[0] != self.remote[0] or self._closed or self._future.done():
            self.ignored += 1
            return
        try:
            self._receive(data)
        except Exception as exc:
            log.exception("%s: media session failed on a received datagram", self.tag)
            self.fail(exc)

    @abstractmethod
    def _receive(self, data: bytes) -> None:
        """Handle one datagram from the far end."""

    def fail(self, exc: BaseException) -> None:
        """End the session with an exception (the ticker calls this when ``tick`` raised)."""
        if not self._future.done():
            self._future.set_exception(exc)
        self._teardown()

    # -- ending -------------------------------------------------------------------

    def cancel(self) -> None:
        """Give up now (our decision): T.30 ends, the result says cancelled."""
        self._cancelled = True
        self._end_now()

    def call_ended(self) -> None:
        """The call went away (BYE): T.30 ends now; unfinished means call dropped."""
        self._end_now()

    def _end_now(self) -> None:
        if self._future.done():
            return
        if self._code is None:
            self._terminate()
        if self._code is None:  # not started: no phase E from spandsp
            self._code = spandsp.T30_ERR_CALLDROPPED
        self._finish()

    @abstractmethod
    def _terminate(self) -> None:
        """Make spandsp end T.30 now (runs phase E)."""

    def _finish(self) -> None:
        if not self._future.done():
            self._future.set_result(self._result())
        self._teardown()

    def _result(self) -> FaxResult:
        code = self._code if self._code is not None else spandsp.T30_ERR_CALLDROPPED
        stats = self._final or self._t30.stats()
        sending = self.job.sending
        return FaxResult(
            completion_code=code,
            words=spandsp.completion_code_to_str(code),
            sending=sending,
            pages_transferred=stats.pages_tx if sending else stats.pages_rx,
            pages_in_file=stats.pages_in_file if sending else stats.pages_rx,
            bit_rate=stats.bit_rate,
            ecm=stats.ecm,
            x_resolution=_dpi(stats.x_resolution),
            y_resolution=_dpi(stats.y_resolution),
            remote_ident=self._remote_ident,
            duration=self.samples / SAMPLE_RATE,
            bad_rows=self._bad_rows if not sending else stats.bad_rows,
            cancelled=self._cancelled,
            pages_expected=self._pages_expected(stats) if sending else stats.pages_rx,
        )

    def _teardown(self) -> None:
        if self._ticker is not None:
            self._ticker.remove(self)
        if self.endpoint.receiver == self._on_datagram:
            self.endpoint.attach(None)

    @property
    def result(self) -> FaxResult | None:
        """The result, once the session has ended."""
        if self._future.done() and not self._future.cancelled() and not self._future.exception():
            return self._future.result()
        return None

    async def wait(self) -> FaxResult:
        """Wait for T.30 to end; the transmission report."""
        return await asyncio.shield(self._future)

    def close(self) -> None:
        """End the session if still running (cancelled) and free the C state."""
        if self._closed:
            return
        if not self._future.done():
            self.cancel()
        self._teardown()
        self._closed = True
        self._free()

    @abstractmethod
    def _free(self) -> None:
        """Free the C state."""


class T38Session(FaxSession):
    """T.30 over T.38: a spandsp T.38 terminal fed by UDPTL."""

    kind = "t38"

    def __init__(
        self,
        endpoint: MediaEndpoint,
        remote: Address,
        job: FaxJob,
        params: T38Params,
        *,
        calling: bool | None = None,
        ticker: Ticker | None = None,
        on_page: PageCallback | None = None,
    ) -> None:
        super().__init__(endpoint, remote, job, calling=calling, ticker=ticker, on_page=on_page)
        self.params = params
        self.sender = UdptlSender(
            redundancy=params.redundancy_depth, max_datagram=params.max_datagram
        )
        self.receiver = UdptlReceiver(params.version)
        self.terminal = spandsp.T38Terminal(self.calling, self._send_ifp, self.tag)
        self.terminal.configure(
            version=params.version,
            max_bit_rate=params.max_bit_rate,
            local_tcf=params.rate_management == "localTCF",
            max_buffer=params.max_buffer,
            max_datagram=params.max_datagram,
            # With redundancy, each end-of-data packet goes once: the next packets repeat
            # it anyway, and repeated end-of-data copies read as malformed to analysers.
            # Without redundancy spandsp's three copies stay, each with its own number.
            copies=_ONE_END_COPY if params.redundancy_depth else None,
        )
        self._setup_t30(self.terminal.t30)
        self.terminal.t30.set_supported_modems(job.modems & params.modems | spandsp.Modem.IAF)
        self.rejected = 0  # IFPs spandsp refused
        self._done = False

    def _send_ifp(self, ifp: bytes, count: int) -> None:
        # spandsp asks for `count` copies of indicators and end-of-data packets: each goes
        # in its own UDPTL packet with its own sequence number, as T.38 wants repeats sent.
        for _ in range(count):
            self.endpoint.sendto(self.sender.packet(ifp), self.remote)

    def _receive(self, data: bytes) -> None:
        try:
            ifps = self.receiver.receive(data)
        except UdptlError as exc:
            self.ignored += 1
            log.debug("%s: malformed UDPTL packet dropped: %s", self.tag, exc)
            return
        for seq, ifp in ifps:
            if self.terminal.rx_ifp(ifp, seq) < 0:
                self.rejected += 1

    def _run(self, samples: int) -> bool:
        self._done = self.terminal.send_timeout(samples)
        return self._done

    def _drained(self) -> bool:
        return self._done

    def _terminate(self) -> None:
        self.terminal.terminate()

    def _free(self) -> None:
        self.terminal.close()


class AudioFaxSession(FaxSession):
    """T.30 over G.711 audio: spandsp's fax modems fed by RTP."""

    kind = "g711"

    def __init__(
        self,
        endpoint: MediaEndpoint,
        remote: Address,
        job: FaxJob,
        params: AudioParams,
        *,
        calling: bool | None = None,
        ticker: Ticker | None = None,
        on_page: PageCallback | None = None,
        jitter_delay: int = 480,
    ) -> None:
        super().__init__(endpoint, remote, job, calling=calling, ticker=ticker, on_page=on_page)
        self.params = params
        self.codec = Codec(params.codec)
        self.packet_samples = params.ptime * SAMPLE_RATE // 1000
        self.rtp = RtpSender(params.payload_type, self.packet_samples)
        self.jitter = JitterBuffer(delay=jitter_delay)
        self.modem = spandsp.AudioFax(self.calling, self.tag)
        self._setup_t30(self.modem.t30)
        self.modem.t30.set_supported_modems(job.modems)
        self._tx_due = 0
        self._rx_owed = 0  # samples of playout time not yet handed to the modem

    def _receive(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.ignored += 1
            return
        if packet.payload_type != self.params.payload_type:
            self.ignored += 1  # comfort noise, telephone-event, …: not fax audio
            return
        self.jitter.push(packet, self.codec.decode(packet.payload))

    def _run(self, samples: int) -> bool:
        modem = self.modem
        # Play out what has arrived; when the buffer runs dry (the loop stalled and the
        # datagrams are still unread, or the far end paused) owe up to _RX_HOLD samples
        # rather than fill in audio that may yet come. Beyond that, time moves on.
        owed = self._rx_owed + samples
        play = min(owed, max(self.jitter.buffered(), owed - _RX_HOLD))
        self._rx_owed = owed - play
        for chunk in self.jitter.pull(play):
            if isinstance(chunk, bytes):
                modem.rx(chunk)
            else:
                modem.rx_fillin(chunk)
        self._tx_due += samples
        size = self.packet_samples
        while self._tx_due >= size:
            self._tx_due -= size
            payload = self.codec.encode(modem.tx(size))
            self.endpoint.sendto(self.rtp.packet(payload), self.remote)
        return False

    def _terminate(self) -> None:
        self.modem.terminate()

    def _free(self) -> None:
        self.modem.close()


async def start_session(
    job: FaxJob,
    params: MediaParams,
    remote: Address,
    *,
    endpoint: MediaEndpoint | None = None,
    media_ip: str = "127.0.0.1",
    media_ports: str | range | tuple[int, int] | None = None,
    calling: bool | None = None,
    ticker: Ticker | None = None,
    on_page: PageCallback | None = None,
) -> FaxSession:
    """Start the session ``params`` call for, on ``endpoint`` or on a newly bound one."""
    if endpoint is None:
        endpoint = await MediaEndpoint.bind(media_ip, media_ports)
    session: FaxSession
    if isinstance(params, T38Params):
        session = T38Session(
            endpoint, remote, job, params, calling=calling, ticker=ticker, on_page=on_page
        )
    else:
        session = AudioFaxSession(
            endpoint, remote, job, params, calling=calling, ticker=ticker, on_page=on_page
        )
    session.start()
    return session
