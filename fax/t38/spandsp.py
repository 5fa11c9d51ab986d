"""A ctypes binding of Debian's libspandsp2 0.0.6: the T.38 terminal, the audio fax modem, T.30.

Only opaque pointers cross the boundary: every state is allocated by spandsp
(``*_init(NULL, …)``) and freed by it (``*_free``); the one struct read here,
``t30_stats_t``, is part of spandsp's public API (``spandsp/t30.h``). Every ctypes
callback and every string handed to C is kept on the Python object that owns the C
state, for as long as that state lives. An exception raised inside a callback is kept
and re-raised once control is back in Python, so it is never swallowed by ctypes.

spandsp's log lines go to the Python logger ``fax.t38.spandsp``; each state's lines carry
the tag given at construction (a session id), and the C level is chosen from that
logger's effective level, so that quiet production runs pay nothing for formatting.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "T30",
    "AudioFax",
    "Compression",
    "ImageSize",
    "Modem",
    "Resolution",
    "SpanDSPError",
    "T38Terminal",
    "TransferStats",
    "completion_code_to_str",
    "frame_type_to_str",
]

log = logging.getLogger("fax.t38.spandsp")

SAMPLE_RATE = 8000
"""spandsp works on 8 kHz samples; every duration handed to it is a sample count."""


class SpanDSPError(RuntimeError):
    """libspandsp is missing, or refused to create or configure a state."""


class Modem(enum.IntFlag):
    """T30_SUPPORT_* modem bits (``spandsp/t30.h``)."""

    V27TER = 0x01
    V29 = 0x02
    V17 = 0x04
    IAF = 0x10


class Compression(enum.IntFlag):
    """T30_SUPPORT_*_COMPRESSION bits."""

    T4_1D = 0x02
    T4_2D = 0x04
    T6 = 0x08


class Resolution(enum.IntFlag):
    """T30_SUPPORT_*_RESOLUTION bits."""

    STANDARD = 0x01
    FINE = 0x02
    SUPERFINE = 0x04


class ImageSize(enum.IntFlag):
    """T30_SUPPORT_* width and length bits."""

    WIDTH_215MM = 0x01
    WIDTH_255MM = 0x02
    WIDTH_303MM = 0x04
    UNLIMITED_LENGTH = 0x10000
    A4_LENGTH = 0x20000
    B4_LENGTH = 0x40000
    US_LETTER_LENGTH = 0x80000
    US_LEGAL_LENGTH = 0x100000


# spandsp constants used below (spandsp/logging.h, t30.h, t38_core.h, t38_terminal.h).
_LOG_ERROR, _LOG_WARNING, _LOG_PROTOCOL_ERROR, _LOG_PROTOCOL_WARNING, _LOG_FLOW = 1, 2, 3, 4, 5
_LOG_SHOW_PROTOCOL, _LOG_SHOW_TAG = 0x0800, 0x2000
T30_ERR_CALLDROPPED = 49
RATE_MANAGEMENT_LOCAL_TCF = 1
RATE_MANAGEMENT_TRANSFERRED_TCF = 2
# t38_packet_categories_e: indicator, control data, control data end, image data, image end.
PACKET_CATEGORIES = range(5)


class _Stats(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_int)
        for name in (
            "bit_rate",
            "error_correcting_mode",
            "pages_tx",
            "pages_rx",
            "pages_in_file",
            "x_resolution",
            "y_resolution",
            "width",
            "length",
            "image_size",
            "encoding",
            "bad_rows",
            "longest_bad_row_run",
            "error_correcting_mode_retries",
            "current_status",
        )
    ]


@dataclass(frozen=True, slots=True)
class TransferStats:
    """``t30_get_transfer_statistics``: resolutions in pixels per metre, as spandsp keeps them."""

    bit_rate: int
    ecm: bool
    pages_tx: int
    pages_rx: int
    pages_in_file: int
    x_resolution: int
    y_resolution: int
    width: int
    length: int
    image_size: int
    encoding: int
    bad_rows: int
    longest_bad_row_run: int
    ecm_retries: int
    current_status: int


_VOIDP = ctypes.c_void_p
_CHARP = ctypes.c_char_p
_INT = ctypes.c_int
_MESSAGE_HANDLER = ctypes.CFUNCTYPE(None, _INT, _CHARP)
_ERROR_HANDLER = ctypes.CFUNCTYPE(None, _CHARP)
_TX_PACKET_HANDLER = ctypes.CFUNCTYPE(
    _INT, _VOIDP, _VOIDP, ctypes.POINTER(ctypes.c_uint8), _INT, _INT
)
_PHASE_BD_HANDLER = ctypes.CFUNCTYPE(_INT, _VOIDP, _VOIDP, _INT)
_PHASE_E_HANDLER = ctypes.CFUNCTYPE(None, _VOIDP, _VOIDP, _INT)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "span_log_set_level": (_INT, [_VOIDP, _INT]),
    "span_log_set_tag": (_INT, [_VOIDP, _CHARP]),
    "span_log_set_message_handler": (None, [_VOIDP, _MESSAGE_HANDLER]),
    "span_log_set_error_handler": (None, [_VOIDP, _ERROR_HANDLER]),
    "span_set_message_handler": (None, [_MESSAGE_HANDLER]),
    "span_set_error_handler": (None, [_ERROR_HANDLER]),
    "t30_completion_code_to_str": (_CHARP, [_INT]),
    "t30_frametype": (_CHARP, [ctypes.c_uint8]),
    "t30_set_tx_file": (None, [_VOIDP, _CHARP, _INT, _INT]),
    "t30_set_rx_file": (None, [_VOIDP, _CHARP, _INT]),
    "t30_set_tx_ident": (_INT, [_VOIDP, _CHARP]),
    "t30_get_rx_ident": (_CHARP, [_VOIDP]),
    "t30_set_tx_page_header_info": (_INT, [_VOIDP, _CHARP]),
    "t30_set_ecm_capability": (_INT, [_VOIDP, _INT]),
    "t30_set_supported_modems": (_INT, [_VOIDP, _INT]),
    "t30_set_supported_compressions": (_INT, [_VOIDP, _INT]),
    "t30_set_supported_resolutions": (_INT, [_VOIDP, _INT]),
    "t30_set_supported_image_sizes": (_INT, [_VOIDP, _INT]),
    "t30_set_iaf_mode": (None, [_VOIDP, _INT]),
    "t30_set_phase_b_handler": (None, [_VOIDP, _PHASE_BD_HANDLER, _VOIDP]),
    "t30_set_phase_d_handler": (None, [_VOIDP, _PHASE_BD_HANDLER, _VOIDP]),
    "t30_set_phase_e_handler": (None, [_VOIDP, _PHASE_E_HANDLER, _VOIDP]),
    "t30_get_transfer_statistics": (None, [_VOIDP, ctypes.POINTER(_Stats)]),
    "t30_get_logging_state": (_VOIDP, [_VOIDP]),
    "t30_call_active": (_INT, [_VOIDP]),
    "t30_terminate": (None, [_VOIDP]),
    "t38_terminal_init": (_VOIDP, [_VOIDP, _INT, _TX_PACKET_HANDLER, _VOIDP]),
    "t38_terminal_free": (_INT, [_VOIDP]),
    "t38_terminal_get_t30_state": (_VOIDP, [_VOIDP]),
    "t38_terminal_get_t38_core_state": (_VOIDP, [_VOIDP]),
    "t38_terminal_get_logging_state": (_VOIDP, [_VOIDP]),
    "t38_terminal_send_timeout": (_INT, [_VOIDP, _INT]),
    "t38_terminal_set_config": (None, [_VOIDP, _INT]),
    "t38_terminal_set_tep_mode": (None, [_VOIDP, _INT]),
    "t38_core_get_logging_state": (_VOIDP, [_VOIDP]),
    "t38_core_rx_ifp_packet": (_INT, [_VOIDP, _CHARP, _INT, ctypes.c_uint16]),
    "t38_set_t38_version": (None, [_VOIDP, _INT]),
    "t38_set_data_rate_management_method": (None, [_VOIDP, _INT]),
    "t38_set_max_buffer_size": (None, [_VOIDP, _INT]),
    "t38_set_max_datagram_size": (None, [_VOIDP, _INT]),
    "t38_set_fastest_image_data_rate": (None, [_VOIDP, _INT]),
    "t38_set_redundancy_control": (None, [_VOIDP, _INT, _INT]),
    "fax_init": (_VOIDP, [_VOIDP, _INT]),
    "fax_free": (_INT, [_VOIDP]),
    "fax_rx": (_INT, [_VOIDP, _CHARP, _INT]),
    "fax_rx_fillin": (_INT, [_VOIDP, _INT]),
    "fax_tx": (_INT, [_VOIDP, _VOIDP, _INT]),
    "fax_set_transmit_on_idle": (None, [_VOIDP, _INT]),
    "fax_set_tep_mode": (None, [_VOIDP, _INT]),
    "fax_get_t30_state": (_VOIDP, [_VOIDP]),
    "fax_get_logging_state": (_VOIDP, [_VOIDP]),
}


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("spandsp") or "libspandsp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise SpanDSPError(
            f"libspandsp is not installed ({exc}): install the Debian package libspandsp2"
        ) from exc
    for fn, (restype, argtypes) in _SIGNATURES.items():
        func = getattr(lib, fn)
        func.restype = restype
        func.argtypes = argtypes
    return lib


_lib = _load()


def _py_level(level: int) -> int:
    severity = level & 0xFF
    if severity <= _LOG_ERROR:
        return logging.ERROR
    if severity <= _LOG_PROTOCOL_ERROR:
        return logging.WARNING
    if severity == _LOG_PROTOCOL_WARNING:
        return logging.INFO
    return logging.DEBUG


def _on_message(level: int, text: bytes | None) -> None:
    if text:
        log.log(_py_level(level), "%s", text.decode("latin-1").rstrip())


def _on_error(text: bytes | None) -> None:
    if text:
        log.error("%s", text.decode("latin-1").rstrip())


# Module-level: spandsp keeps these pointers in every logging state and globally.
_MESSAGE_CB = _MESSAGE_HANDLER(_on_message)
_ERROR_CB = _ERROR_HANDLER(_on_error)
_lib.span_set_message_handler(_MESSAGE_CB)
_lib.span_set_error_handler(_ERROR_CB)


def _c_level() -> int:
    if log.isEnabledFor(logging.DEBUG):
        severity = _LOG_FLOW
    elif log.isEnabledFor(logging.INFO):
        severity = _LOG_PROTOCOL_WARNING
    else:
        severity = _LOG_WARNING
    return severity | _LOG_SHOW_PROTOCOL | _LOG_SHOW_TAG


def completion_code_to_str(code: int) -> str:
    """The words spandsp has for a T.30 completion code (``t30_completion_code_to_str``)."""
    text = _lib.t30_completion_code_to_str(code)
    return text.decode("latin-1") if text else f"T.30 code {code}"


def frame_type_to_str(fcf: int) -> str:
    """The name of a T.30 frame type (``t30_frametype``), e.g. ``MCF`` for 0x31."""
    text = _lib.t30_frametype(fcf & 0xFF)
    return text.decode("latin-1") if text else f"0x{fcf:02X}"


def _ascii(value: str, limit: int, what: str) -> bytes:
    data = value.encode("ascii")
    if len(data) > limit:
        raise ValueError(f"{what} is longer than {limit} characters: {value!r}")
    return data


class _Owner:
    """Holds what C points at (callbacks, strings) and an error raised inside a callback."""

    def __init__(self, tag: str) -> None:
        self._tag = tag.encode("ascii", "replace")
        self._keep: dict[str, Any] = {}
        self._error: BaseException | None = None

    def keep(self, key: str, obj: Any) -> Any:
        self._keep[key] = obj
        return obj

    def failed(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def reraise(self) -> None:
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def wire_logging(self, *states: int | None) -> None:
        level = _c_level()
        for state in states:
            if state:
                _lib.span_log_set_message_handler(state, _MESSAGE_CB)
                _lib.span_log_set_error_handler(state, _ERROR_CB)
                _lib.span_log_set_tag(state, self._tag)
                _lib.span_log_set_level(state, level)


PhaseHandler = Callable[[int], None]


class T30:
    """The T.30 engine inside a terminal or an audio fax state (not owned: freed with it)."""

    def __init__(self, ptr: int, owner: _Owner) -> None:
        self._ptr = ptr
        self._owner = owner

    def set_tx_file(self, path: str | Path, start_page: int = -1, stop_page: int = -1) -> None:
        """Send this TIFF-F file (pages counted from 0; -1 for no limit)."""
        data = self._owner.keep("tx_file", str(path).encode())
        _lib.t30_set_tx_file(self._ptr, data, start_page, stop_page)

    def set_rx_file(self, path: str | Path, stop_page: int = -1) -> None:
        """Receive into this TIFF-F file."""
        data = self._owner.keep("rx_file", str(path).encode())
        _lib.t30_set_rx_file(self._ptr, data, stop_page)

    def set_tx_ident(self, ident: str) -> None:
        """Our TSI/CSI (at most 20 characters)."""
        data = self._owner.keep("ident", _ascii(ident, 20, "station identifier"))
        _lib.t30_set_tx_ident(self._ptr, data)

    def set_tx_page_header_info(self, info: str) -> None:
        """The line spandsp prints atop each page we send (at most 50 characters)."""
        data = self._owner.keep("header", _ascii(info, 50, "page header"))
        _lib.t30_set_tx_page_header_info(self._ptr, data)

    def set_ecm(self, enabled: bool) -> None:
        """Offer (and accept) error correction mode."""
        _lib.t30_set_ecm_capability(self._ptr, int(enabled))

    def set_supported_modems(self, modems: Modem) -> None:
        """Which image modems T.30 may use."""
        _lib.t30_set_supported_modems(self._ptr, int(modems))

    def set_supported_compressions(self, compressions: Compression) -> None:
        """Which image codings T.30 may use."""
        _lib.t30_set_supported_compressions(self._ptr, int(compressions))

    def set_supported_resolutions(self, resolutions: Resolution) -> None:
        """Which vertical resolutions we accept."""
        _lib.t30_set_supported_resolutions(self._ptr, int(resolutions))

    def set_supported_image_sizes(self, sizes: ImageSize) -> None:
        """Which page widths and lengths we accept."""
        _lib.t30_set_supported_image_sizes(self._ptr, int(sizes))

    def set_iaf_mode(self, mode: int) -> None:
        """Internet-aware-fax flags (``T30_IAF_MODE_*``)."""
        _lib.t30_set_iaf_mode(self._ptr, mode)

    def set_phase_b_handler(self, handler: PhaseHandler) -> None:
        """Call ``handler(fcf)`` at phase B (the DIS/DCS exchange)."""
        self._set_bd("b", _lib.t30_set_phase_b_handler, handler)

    def set_phase_d_handler(self, handler: PhaseHandler) -> None:
        """Call ``handler(fcf)`` at phase D (after each page: MPS/EOP sent, MCF/RTN received)."""
        self._set_bd("d", _lib.t30_set_phase_d_handler, handler)

    def set_phase_e_handler(self, handler: PhaseHandler) -> None:
        """Call ``handler(completion_code)`` once T.30 has finished."""
        owner = self._owner

        def trampoline(_s: int | None, _u: int | None, code: int) -> None:
            try:
                handler(code)
            except BaseException as exc:
                owner.failed(exc)

        callback = owner.keep("phase_e", _PHASE_E_HANDLER(trampoline))
        _lib.t30_set_phase_e_handler(self._ptr, callback, None)

    def _set_bd(self, phase: str, setter: Any, handler: PhaseHandler) -> None:
        owner = self._owner

        def trampoline(_s: int | None, _u: int | None, fcf: int) -> int:
            try:
                handler(fcf)
            except BaseException as exc:
                owner.failed(exc)
            return 0  # T30_ERR_OK: go on

        setter(self._ptr, owner.keep(f"phase_{phase}", _PHASE_BD_HANDLER(trampoline)), None)

    def stats(self) -> TransferStats:
        """The transfer statistics now."""
        raw = _Stats()
        _lib.t30_get_transfer_statistics(self._ptr, ctypes.byref(raw))
        return TransferStats(
            raw.bit_rate,
            bool(raw.error_correcting_mode),
            raw.pages_tx,
            raw.pages_rx,
            raw.pages_in_file,
            raw.x_resolution,
            raw.y_resolution,
            raw.width,
            raw.length,
            raw.image_size,
            raw.encoding,
            raw.bad_rows,
            raw.longest_bad_row_run,
            raw.error_correcting_mode_retries,
            raw.current_status,
        )

    def rx_ident(self) -> str:
        """The far end's TSI/CSI, as received."""
        text = _lib.t30_get_rx_ident(self._ptr)
        return text.decode("latin-1").strip() if text else ""

    def call_active(self) -> bool:
        """Whether T.30 has not finished yet."""
        return bool(_lib.t30_call_active(self._ptr))

    def terminate(self) -> None:
        """End T.30 now (the call is gone): phase E runs with the current status."""
        _lib.t30_terminate(self._ptr)


class T38Terminal:
    """A T.38 fax terminal: IFP packets in and out, T.30 inside."""

    def __init__(self, calling: bool, tx_packet: Callable[[bytes, int], None], tag: str) -> None:
        self._owner = owner = _Owner(tag)

        def on_tx(_core: int | None, _u: int | None, buf: Any, length: int, count: int) -> int:
            try:
                # buf is valid only during this call: copy it out.
                tx_packet(ctypes.string_at(buf, length), count)
            except BaseException as exc:
                owner.failed(exc)
                return -1
            return 0

        cb = owner.keep("tx", _TX_PACKET_HANDLER(on_tx))
        ptr = _lib.t38_terminal_init(None, int(calling), cb, None)
        if not ptr:
            raise SpanDSPError("t38_terminal_init failed")
        self._ptr: int | None = ptr
        self._core: int = _lib.t38_terminal_get_t38_core_state(ptr)
        self.t30 = T30(_lib.t38_terminal_get_t30_state(ptr), owner)
        owner.wire_logging(
            _lib.t38_terminal_get_logging_state(ptr),
            _lib.t38_core_get_logging_state(self._core),
            _lib.t30_get_logging_state(self.t30._ptr),
        )

    def configure(
        self,
        *,
        version: int,
        max_bit_rate: int,
        local_tcf: bool,
        max_buffer: int,
        max_datagram: int,
        copies: dict[int, int] | None = None,
    ) -> None:
        """Apply the negotiated T.38 parameters; ``copies`` overrides per-category repeats.

        A T.38 terminal sends and expects TCF whatever ``local_tcf`` says (see below).
        """
        core = self._core
        _lib.t38_set_t38_version(core, version)
        _lib.t38_set_fastest_image_data_rate(core, max_bit_rate)
        _lib.t38_set_data_rate_management_method(
            core, RATE_MANAGEMENT_LOCAL_TCF if local_tcf else RATE_MANAGEMENT_TRANSFERRED_TCF
        )
        _lib.t38_set_max_buffer_size(core, max_buffer)
        _lib.t38_set_max_datagram_size(core, max_datagram)
        for category, count in (copies or {}).items():
            _lib.t38_set_redundancy_control(core, category, count)
        # spandsp 0.0.6's T30_IAF_MODE_NO_TCF skips TCF on the sending side but leaves the
        # receiving side waiting for it, so the terminal always transfers TCF (as
        # FreeSWITCH's does); localTCF only sets the core's rate management method.

    def rx_ifp(self, ifp: bytes, seq: int) -> int:
        """Feed one received IFP packet with its UDPTL sequence number; <0 if spandsp refused it."""
        if self._ptr is None:
            return -1
        result: int = _lib.t38_core_rx_ifp_packet(self._core, ifp, len(ifp), seq & 0xFFFF)
        self._owner.reraise()
        return result

    def send_timeout(self, samples: int) -> bool:
        """Advance time by ``samples`` (8 kHz); True once T.30 has finished."""
        if self._ptr is None:
            return True
        done = bool(_lib.t38_terminal_send_timeout(self._ptr, samples))
        self._owner.reraise()
        return done

    def terminate(self) -> None:
        """End T.30 now (the call went away); phase E runs."""
        if self._ptr is not None:
            self.t30.terminate()
            self._owner.reraise()

    def close(self) -> None:
        """Free the C state (idempotent)."""
        if self._ptr is not None:
            _lib.t38_terminal_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        # Forgotten without close(): free while the callbacks it points at are still alive.
        if getattr(self, "_ptr", None) is not None:
            self.close()


class AudioFax:
    """spandsp's audio fax modem (``fax_state_t``): 16-bit linear samples in and out."""

    def __init__(self, calling: bool, tag: str) -> None:
        self._owner = owner = _Owner(tag)
        ptr = _lib.fax_init(None, int(calling))
        if not ptr:
            raise SpanDSPError("fax_init failed")
        self._ptr: int | None = ptr
        self.t30 = T30(_lib.fax_get_t30_state(ptr), owner)
        owner.wire_logging(
            _lib.fax_get_logging_state(ptr), _lib.t30_get_logging_state(self.t30._ptr)
        )
        # Always produce samples (silence between signals) so the RTP stream never stalls.
        _lib.fax_set_transmit_on_idle(ptr, 1)
        self._tx_buf = (ctypes.c_int16 * 1600)()

    def set_tep_mode(self, on: bool) -> None:
        """Send the talker echo protect tone before image data."""
        if self._ptr is not None:
            _lib.fax_set_tep_mode(self._ptr, int(on))

    def rx(self, pcm: bytes) -> None:
        """Feed received 16-bit little-endian linear samples."""
        if self._ptr is not None and pcm:
            _lib.fax_rx(self._ptr, pcm, len(pcm) // 2)
            self._owner.reraise()

    def rx_fillin(self, samples: int) -> None:
        """Tell the modem that ``samples`` were lost (keeps its timing and T.30's timers)."""
        if self._ptr is not None and samples > 0:
            _lib.fax_rx_fillin(self._ptr, samples)
            self._owner.reraise()

    def tx(self, samples: int) -> bytes:
        """Generate ``samples`` 16-bit little-endian linear samples to send."""
        if self._ptr is None:
            return bytes(2 * samples)
        out = bytearray()
        buf = self._tx_buf
        while samples > 0:
            n = min(samples, len(buf))
            got = _lib.fax_tx(self._ptr, buf, n)
            self._owner.reraise()
            chunk = ctypes.string_at(buf, 2 * got)
            out += chunk
            if got < n:  # nothing to say: silence for the rest
                out += bytes(2 * (n - got))
            samples -= n
        return bytes(out)

    def terminate(self) -> None:
        """End T.30 now (the call went away); phase E runs."""
        if self._ptr is not None:
            self.t30.terminate()
            self._owner.reraise()

    def close(self) -> None:
        """Free the C state (idempotent)."""
        if self._ptr is not None:
            _lib.fax_free(self._ptr)
            self._ptr = None

    def __del__(self) -> None:
        if getattr(self, "_ptr", None) is not None:
            self.close()
