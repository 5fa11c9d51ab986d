"""One table from SIP and T.30 outcomes to our errors, the fallback ladder, and the retry
schedule of the established fax servers (HylaFAX's defaults).

================================  =========  ===================  ===========================
outcome                           retry?     after                counts as
================================  =========  ===================  ===========================
SIP busy (486, 600)               yes        ``retry_busy``       a dial
no answer (408, 480, ring timer)  yes        ``retry_no_answer``  a dial
unallocated (404, 484, 604)       never      —                    invalid_number
rejected (403, 603)               never      —                    rejected
488 / no common media             yes        ``retry_protocol``   a try, next ladder step
digest refused (401/407)          auth       (connector parked)   —
trunk unreachable / 5xx           yes        ``retry_protocol``   a dial
T.30 protocol error, call dropped yes        ``retry_protocol``   a try, next ladder step
no fax machine answered (T0/T1)   yes        ``retry_no_answer``  a try
far end refuses this document     never      —                    rejected
our TIFF unusable                 never      —                    content_invalid
================================  =========  ===================  ===========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from connectors.base import ErrorCode
from connectors.sip_t38.options import SipT38Options
from fax.t38.errors import (
    FaxCancelledError,
    FaxDocumentError,
    FaxError,
    FaxNoResponseError,
    FaxRefusedError,
)
from fax.t38.sip.outcome import CallOutcome, EndCause
from fax.t38.spandsp import Modem

Kind = Literal["busy", "no_answer", "protocol", "retry", "final", "auth"]


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of the fallback ladder."""

    t38: bool
    ecm: bool
    v17: bool = True

    @property
    def modems(self) -> Modem:
        """The image modems this step allows."""
        base = Modem.V29 | Modem.V27TER
        return base | Modem.V17 if self.v17 else base

    def words(self) -> str:
        """How the report names it."""
        media = "T.38" if self.t38 else "G.711"
        return f"{media}{' + ECM' if self.ecm else ''}{'' if self.v17 else ' without V.17'}"


LADDER: Final = (
    Step(t38=True, ecm=True),
    Step(t38=False, ecm=True),
    Step(t38=True, ecm=False),
    Step(t38=False, ecm=False, v17=False),
)


def ladder(opts: SipT38Options) -> tuple[Step, ...]:
    """The steps this connector may use (T.38 only, no ECM when ``ecm`` is off)."""
    steps = [s for s in LADDER if s.t38 or not opts.t38_only]
    if not opts.ecm:
        steps = [s for s in steps if not s.ecm] or [Step(t38=True, ecm=False)]
    return tuple(steps)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one failed attempt amounts to."""

    kind: Kind
    message: str
    code: str
    carrier_code: str | None = None

    @property
    def counts_as_try(self) -> bool:
        """A call that was answered and failed uses up a try (busy does not)."""
        return self.kind in ("protocol", "no_answer") and self.carrier_code is not None \
            and self.carrier_code.startswith("t30:")

    @property
    def words(self) -> str:
        """The outcome as a sender reads it ("not sent yet: the line was busy")."""
        return _WORDS.get(self.kind, self.message)

    def retry_after(self, opts: SipT38Options) -> float:
        """The wait before the next attempt."""
        if self.kind == "busy":
            return opts.retry_busy
        if self.kind == "no_answer":
            return opts.retry_no_answer
        return opts.retry_protocol


_WORDS: Final[dict[Kind, str]] = {
    "busy": "the line was busy",
    "no_answer": "no fax machine answered",
    "protocol": "the transmission broke off",
    "retry": "the call could not be made",
}

_SIP: Final[dict[EndCause, tuple[Kind, str]]] = {
    EndCause.BUSY: ("busy", ErrorCode.UNREACHABLE),
    EndCause.NO_ANSWER: ("no_answer", ErrorCode.UNREACHABLE),
    EndCause.UNALLOCATED: ("final", ErrorCode.INVALID_NUMBER),
    EndCause.REJECTED: ("final", ErrorCode.REJECTED),
    EndCause.NOT_ACCEPTABLE: ("protocol", ErrorCode.CARRIER_ERROR),
    EndCause.AUTH_FAILED: ("auth", ErrorCode.AUTH_FAILED),
    EndCause.CANCELLED: ("no_answer", ErrorCode.UNREACHABLE),
    EndCause.TRANSPORT_ERROR: ("retry", ErrorCode.UNREACHABLE),
    EndCause.FAILED: ("retry", ErrorCode.CARRIER_ERROR),
    EndCause.SESSION_EXPIRED: ("protocol", ErrorCode.CARRIER_ERROR),
    EndCause.REMOTE_HANGUP: ("protocol", ErrorCode.CARRIER_ERROR),
    EndCause.LOCAL_HANGUP: ("protocol", ErrorCode.CARRIER_ERROR),
}


def for_call(outcome: CallOutcome) -> Verdict:
    """The verdict on a call that was never answered (or ended before T.30 ran)."""
    kind, code = _SIP[outcome.cause]
    return Verdict(kind, f"SIP {outcome.status} {outcome.reason} ({outcome.cause})", code,
                   f"sip:{outcome.status}")


def for_fax(error: FaxError) -> Verdict:
    """The verdict on a T.30 session that did not end with every page confirmed."""
    carrier = f"t30:{error.code}" if error.code is not None else "t30:incomplete"
    text = f"T.30: {error}"
    if isinstance(error, FaxDocumentError):
        return Verdict("final", text, ErrorCode.CONTENT_INVALID, carrier)
    if isinstance(error, FaxRefusedError):
        return Verdict("final", text, ErrorCode.REJECTED, carrier)
    if isinstance(error, FaxNoResponseError):
        return Verdict("no_answer", text, ErrorCode.UNREACHABLE, carrier)
    if isinstance(error, FaxCancelledError):
        return Verdict("retry", text, ErrorCode.CARRIER_ERROR, carrier)
    return Verdict("protocol", text, ErrorCode.CARRIER_ERROR, carrier)
