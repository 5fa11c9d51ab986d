"""The fax error tree: how a T.30 call can fail, grouped by what a retry can do about it.

::

    FaxError                      (code: the T.30 completion code, or None)
    ├── FaxProtocolError          T.30 went wrong: retry with the next step of the ladder
    │   ├── FaxPhaseBError        negotiation and training (DIS/DCS/TCF/CFR)
    │   ├── FaxPhaseCError        image transfer (carrier, lines, ECM frames)
    │   ├── FaxPhaseDError        post-page exchange (MPS/EOP/MCF, RR/RNR, CTC)
    │   ├── FaxCallDroppedError   the call ended under T.30 (BYE, media stopped)
    │   └── FaxIncompleteError    T.30 said OK but not every page was confirmed
    ├── FaxNoResponseError        no fax machine answered (T0/T1 expired): like no answer
    ├── FaxRefusedError           the far end refused or cannot take this fax: not retried
    │                             with the same document and settings
    ├── FaxDocumentError          our TIFF-F file is unreadable or unsuitable
    └── FaxCancelledError         we ended the session ourselves

Busy, no answer and SIP refusals come from the SIP layer; the integration maps both this
tree and the SIP outcomes to connector errors in one table.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FaxCallDroppedError",
    "FaxCancelledError",
    "FaxDocumentError",
    "FaxError",
    "FaxIncompleteError",
    "FaxNoResponseError",
    "FaxPhaseBError",
    "FaxPhaseCError",
    "FaxPhaseDError",
    "FaxProtocolError",
    "FaxRefusedError",
    "error_for_code",
]


class FaxError(Exception):
    """A fax did not go through; ``code`` is the T.30 completion code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class FaxProtocolError(FaxError):
    """T.30 failed: worth another try, with the next step of the fallback ladder."""


class FaxPhaseBError(FaxProtocolError):
    """Failed while negotiating or training (phase B)."""


class FaxPhaseCError(FaxProtocolError):
    """Failed while the page image was being transferred (phase C)."""


class FaxPhaseDError(FaxProtocolError):
    """Failed in the post-page exchange (phase D)."""


class FaxCallDroppedError(FaxProtocolError):
    """The call went away while T.30 was still running."""


class FaxIncompleteError(FaxProtocolError):
    """T.30 ended OK, yet not every page was confirmed by the far end."""


class FaxNoResponseError(FaxError):
    """No fax machine answered: nothing was negotiated at all."""


class FaxRefusedError(FaxError):
    """The far end refused, or cannot receive this document (resolution, size, coding)."""


class FaxDocumentError(FaxError):
    """Our own document cannot be sent (file missing, not TIFF-F, bad tags)."""


class FaxCancelledError(FaxError):
    """We ended the fax ourselves before T.30 finished."""


# T.30 completion codes (spandsp/t30.h, enum T30_ERR_*) by group.
_GROUPS: Final[dict[type[FaxError], tuple[int, ...]]] = {
    # CEDTONE, HDLC_CARRIER, CANNOT_TRAIN, OPER_INT_FAIL, UNEXPECTED, TX_BADDCS, TX_GOTDCN,
    # TX_NODIS, TX_PHBDEAD, RX_GOTDCS, RX_T2EXP, RX_DCNWHY, T3_EXPIRED
    FaxPhaseBError: (1, 4, 5, 6, 7, 13, 14, 17, 19, 20, 24, 34, 35),
    # RX_NOCARRIER, RX_NOEOL, RX_NOFAX, RX_T2EXPFAX, RX_DCNDATA
    FaxPhaseCError: (26, 27, 28, 31, 36),
    # TX_BADPG, TX_ECMPHD, TX_INVALRSP, TX_PHDDEAD, TX_T5EXP, RX_ECMPHD, RX_INVALCMD,
    # RX_T2EXPDCN, RX_T2EXPD, RX_T2EXPMPS, RX_T2EXPRR, RX_DCNFAX, RX_DCNPHD, RX_DCNRRD,
    # RX_DCNNORTN, RETRYDCN
    FaxPhaseDError: (15, 16, 18, 21, 22, 23, 25, 29, 30, 32, 33, 37, 38, 39, 40, 48),
    FaxCallDroppedError: (49,),  # CALLDROPPED
    FaxNoResponseError: (2, 3),  # T0_EXPIRED, T1_EXPIRED
    # INCOMPATIBLE, RX_INCAPABLE, TX_INCAPABLE, NORESSUPPORT, NOSIZESUPPORT, NOPOLL and
    # the far end refusing an identity, sub-address, password or address (51-61)
    FaxRefusedError: (8, 9, 10, 11, 12, 50, *range(51, 62)),
    # FILEERROR, NOPAGE, BADTIFF, BADPAGE, BADTAG, BADTIFFHDR, NOMEM
    FaxDocumentError: (41, 42, 43, 44, 45, 46, 47),
}
_BY_CODE: Final[dict[int, type[FaxError]]] = {
    code: cls for cls, codes in _GROUPS.items() for code in codes
}


def error_for_code(code: int, words: str | None = None) -> FaxError | None:
    """The error for a T.30 completion code (None for 0, OK); unknown codes are protocol errors."""
    if code == 0:
        return None
    cls = _BY_CODE.get(code, FaxProtocolError)
    return cls(words or f"T.30 completion code {code}", code)
