"""How a call ended, in SIP terms and in one word the connector maps to its errors."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EndCause(StrEnum):
    """Why a call ended (before or after it was answered)."""

    LOCAL_HANGUP = "local_hangup"  # we sent BYE
    REMOTE_HANGUP = "remote_hangup"  # the far end sent BYE
    CANCELLED = "cancelled"  # CANCEL before the answer (ours, or the caller's)
    BUSY = "busy"  # 486, 600
    NO_ANSWER = "no_answer"  # 408, 480, ring timeout, no response at all
    UNALLOCATED = "unallocated"  # 404, 484, 604
    REJECTED = "rejected"  # 403, 603
    NOT_ACCEPTABLE = "not_acceptable"  # 488, 606, 415: no common media
    SESSION_EXPIRED = "session_expired"  # no RFC 4028 refresh came, or the far end stopped
    # answering in-dialog requests (408/481/timeout to a re-INVITE, UPDATE or refresh)
    AUTH_FAILED = "auth_failed"  # 401/407 our credentials could not satisfy
    TRANSPORT_ERROR = "transport_error"  # cannot reach the proxy / connection lost
    FAILED = "failed"  # any other failure response (5xx, …)


_BY_STATUS = {
    486: EndCause.BUSY, 600: EndCause.BUSY,
    408: EndCause.NO_ANSWER, 480: EndCause.NO_ANSWER,
    404: EndCause.UNALLOCATED, 484: EndCause.UNALLOCATED, 604: EndCause.UNALLOCATED,
    403: EndCause.REJECTED, 603: EndCause.REJECTED,
    488: EndCause.NOT_ACCEPTABLE, 606: EndCause.NOT_ACCEPTABLE, 415: EndCause.NOT_ACCEPTABLE,
    401: EndCause.AUTH_FAILED, 407: EndCause.AUTH_FAILED,
    487: EndCause.CANCELLED,
}


@dataclass(frozen=True)
class CallOutcome:
    """The end of a call: its cause, the SIP status that decided it, and the reason text.

    ``status`` is the final response to the INVITE for a call that was never answered
    (487 after CANCEL, 408 when nothing answered in time), 200 for a call that ended by BYE.
    ``answered`` says whether the call was ever established.
    """

    cause: EndCause
    status: int
    reason: str
    answered: bool = False

    @classmethod
    def from_status(cls, status: int, reason: str, *, answered: bool = False) -> CallOutcome:
        """The outcome a failure response to an INVITE means."""
        return cls(_BY_STATUS.get(status, EndCause.FAILED), status, reason, answered)
