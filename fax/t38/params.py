"""What a media session is started with, and what it ends with.

``T38Params`` and ``AudioParams`` are what SDP offer/answer yields (the SIP layer builds
them from the negotiated ``m=image … udptl t38`` or ``m=audio`` section); ``FaxJob`` is
what to send or receive and how (ident, header, ECM, modems); ``FaxResult`` is the
transmission report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from fax.t38.errors import FaxCancelledError, FaxError, FaxIncompleteError, error_for_code
from fax.t38.spandsp import Compression, Modem, Resolution

__all__ = [
    "LOCAL_T38",
    "AudioParams",
    "FaxJob",
    "FaxResult",
    "MediaParams",
    "PageProgress",
    "T38Params",
]

RateManagement = Literal["transferredTCF", "localTCF"]
UdpEC = Literal["t38UDPRedundancy", "t38UDPFEC", "none"]


@dataclass(frozen=True, slots=True)
class T38Params:
    """The negotiated T.38 session (SDP ``a=T38…`` attributes of the answer).

    ``max_datagram`` and ``max_buffer`` are the FAR END's values (what we may send it);
    ``redundancy`` is our local depth of repeated IFPs when ``udp_ec`` is redundancy.
    """

    version: int = 0
    max_bit_rate: int = 14400
    rate_management: RateManagement = "transferredTCF"
    max_buffer: int = 2000
    max_datagram: int = 400
    udp_ec: UdpEC = "t38UDPRedundancy"
    redundancy: int = 3
    fill_bit_removal: bool = False
    transcoding_mmr: bool = False
    transcoding_jbig: bool = False

    def __post_init__(self) -> None:
        if self.version not in (0, 1, 2, 3):
            raise ValueError(f"T38FaxVersion must be 0-3, not {self.version}")
        if self.max_bit_rate < 2400:
            raise ValueError(f"T38MaxBitRate below 2400: {self.max_bit_rate}")
        if self.max_datagram < 32:
            raise ValueError(f"T38FaxMaxDatagram too small: {self.max_datagram}")

    @property
    def modems(self) -> Modem:
        """The image modems the bit rate allows (V.17 above 9600, V.29 above 4800)."""
        modems = Modem.V27TER
        if self.max_bit_rate >= 7200:
            modems |= Modem.V29
        if self.max_bit_rate >= 12000:
            modems |= Modem.V17
        return modems

    @property
    def redundancy_depth(self) -> int:
        """How many previous IFPs each packet repeats (0 when no error correction was agreed).

        When the far end asked for FEC we still send redundancy: the error-recovery choice
        is marked in every packet, and every UDPTL decoder reads both kinds.
        """
        return 0 if self.udp_ec == "none" else self.redundancy


LOCAL_T38: Final = T38Params(max_buffer=2000, max_datagram=400)
"""What we offer/answer in SDP: T38FaxVersion 0, 14400 bit/s, transferredTCF,
T38FaxMaxBuffer 2000, T38FaxMaxDatagram 400 (we accept any datagram up to 64 KiB),
T38FaxUdpEC t38UDPRedundancy; no fill-bit removal, MMR or JBIG transcoding."""


@dataclass(frozen=True, slots=True)
class AudioParams:
    """The negotiated audio stream: G.711 law and its RTP payload type, packet time."""

    codec: Literal["PCMU", "PCMA"] = "PCMA"
    payload_type: int = 8
    ptime: int = 20

    def __post_init__(self) -> None:
        if self.codec not in ("PCMU", "PCMA"):
            raise ValueError(f"fax over audio needs G.711 (PCMU or PCMA), not {self.codec!r}")
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type out of range: {self.payload_type}")
        if self.ptime not in (10, 20, 30, 40):
            raise ValueError(f"unsupported ptime: {self.ptime} ms")


MediaParams = T38Params | AudioParams


@dataclass(frozen=True, slots=True)
class FaxJob:
    """One fax to send (``send_file``) or receive (``receive_file``), and T.30 settings.

    ``start_page`` resumes a send at a page (counted from 0): the first not confirmed.
    ``header`` is printed atop each sent page by spandsp (empty: none).
    """

    send_file: Path | None = None
    receive_file: Path | None = None
    ident: str = ""
    header: str = ""
    ecm: bool = True
    modems: Modem = Modem.V17 | Modem.V29 | Modem.V27TER
    compressions: Compression = Compression.T4_1D | Compression.T4_2D | Compression.T6
    resolutions: Resolution = Resolution.STANDARD | Resolution.FINE
    start_page: int = 0

    def __post_init__(self) -> None:
        if (self.send_file is None) == (self.receive_file is None):
            raise ValueError("a fax job either sends a file or receives into one")
        if len(self.ident) > 20 or not self.ident.isascii():
            raise ValueError(f"station identifier: at most 20 ASCII characters: {self.ident!r}")
        if len(self.header) > 50 or not self.header.isascii():
            raise ValueError(f"page header: at most 50 ASCII characters: {self.header!r}")
        if not self.modems & (Modem.V17 | Modem.V29 | Modem.V27TER):
            raise ValueError("at least one of V.17, V.29, V.27ter is needed")

    @property
    def sending(self) -> bool:
        """Whether this job sends a document."""
        return self.send_file is not None


@dataclass(frozen=True, slots=True)
class PageProgress:
    """A page done: ``page`` of ``pages`` (None when the receiver cannot know the total)."""

    page: int
    pages: int | None
    confirmed: bool
    sending: bool


@dataclass(frozen=True, slots=True)
class FaxResult:
    """The transmission report of one session."""

    completion_code: int
    words: str
    sending: bool
    pages_transferred: int
    pages_in_file: int
    bit_rate: int
    ecm: bool
    x_resolution: int
    y_resolution: int
    remote_ident: str
    duration: float
    bad_rows: int
    cancelled: bool = False
    pages_expected: int = field(default=0)

    @property
    def success(self) -> bool:
        """T.30 ended OK and (when sending) every page was confirmed."""
        if self.completion_code != 0 or self.cancelled:
            return False
        if self.sending:
            return self.pages_transferred >= self.pages_expected > 0
        return self.pages_transferred > 0

    @property
    def fine(self) -> bool:
        """Whether the pages went at fine resolution (about 196 lines per inch)."""
        return self.y_resolution >= 150

    @property
    def error(self) -> FaxError | None:
        """The error this result amounts to (None when the fax went through)."""
        if self.cancelled:
            return FaxCancelledError("the fax session was ended locally", self.completion_code)
        found = error_for_code(self.completion_code, self.words)
        if found is None and not self.success:
            return FaxIncompleteError(
                f"{self.pages_transferred} of {self.pages_expected} pages confirmed",
                self.completion_code,
            )
        return found
