"""The signalling errors of the fax transport (SDP and SIP), as one tree.

The connector maps these, the SIP call outcomes (`fax.t38.sip.outcome`) and the T.30
errors of the media layer to connector errors in one table.

    SignallingError
    ├── SdpError (ValueError)        malformed SDP (a line, a number, a missing field)
    │   └── MediaNotAcceptable       well-formed, but no stream we can take (SIP 488)
    └── SipError                     the SIP user agent
        ├── SipParseError (ValueError)   malformed SIP message (SIP 400)
        │   └── MessageTooLarge          over the size limit (SIP 513)
        ├── TransportError           cannot connect / send over UDP, TCP or TLS
        ├── TransactionTimeout       no final response in time (timer B or F)
        ├── CallFailed               an outbound call ended without being answered;
        │                            ``outcome`` holds the SIP status and its meaning
        └── RequestFailed            a non-INVITE request (REGISTER, …) got a failure
                                     response; ``status`` and ``reason``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fax.t38.sip.outcome import CallOutcome


class SignallingError(Exception):
    """Base of every SDP and SIP error."""


class SdpError(SignallingError, ValueError):
    """The SDP text is malformed."""


class MediaNotAcceptable(SdpError):
    """The SDP is well-formed but offers no stream we can accept (answered with 488)."""


class SipError(SignallingError):
    """Base of the SIP user agent's errors."""


class SipParseError(SipError, ValueError):
    """A SIP message cannot be parsed (answered with 400 when it is a request)."""


class MessageTooLarge(SipParseError):
    """A SIP message exceeds the size limit (answered with 513)."""


class TransportError(SipError):
    """A SIP message could not be sent (connection refused, TLS failure, closed socket)."""


class TransactionTimeout(SipError):
    """A request got no final response before timer B (INVITE) or F (others) fired."""


class CallFailed(SipError):
    """An outbound call ended before it was answered (busy, no answer, rejected, …)."""

    def __init__(self, outcome: CallOutcome) -> None:
        super().__init__(f"call failed: {outcome.status} {outcome.reason} ({outcome.cause})")
        self.outcome = outcome


class RequestFailed(SipError):
    """A non-INVITE request (REGISTER, OPTIONS, BYE, …) was answered with a failure."""

    def __init__(self, method: str, status: int, reason: str) -> None:
        super().__init__(f"{method} failed: {status} {reason}")
        self.method = method
        self.status = status
        self.reason = reason
