"""The one table that maps an SMPP ``command_status`` to the gateway's error tree.

Reading of SMPP 3.4 §5.1.3 behind each row:

- the destination or its TON/NPI is invalid → permanent ``invalid_number``;
- the message itself is malformed (length, esm_class, TLVs the SMSC refuses, …) →
  permanent ``content_invalid``: sending it again unchanged cannot succeed;
- the SMSC refuses the sender or our parameters (source address, service type,
  schedule/validity, registered_delivery) → permanent ``rejected`` (a configuration
  matter the operator must fix; the message fails visibly instead of looping);
- throttling (RTHROTTLED) and a full queue (RMSGQFUL) → retryable ``throttled``: the
  bind pauses and the part is retried;
- system errors, "submit failed", the temporary application error, an unbound
  session and unknown/vendor codes → retryable ``carrier_error`` (nothing was accepted,
  so a retry cannot duplicate; the job's attempt limit bounds the loop);
- bind refusals (RINVPASWD, RINVSYSID, RBINDFAIL) → ``AuthError``.
"""

from __future__ import annotations

from connectors.base import (
    AuthError,
    ConnectorError,
    ErrorCode,
    PermanentError,
    RetryableError,
)
from connectors.smpp import pdu as P

PERMANENT = "permanent"
RETRYABLE = "retryable"
THROTTLE = "throttle"
AUTH = "auth"

# status → (kind, normalized error code)
STATUS_TABLE: dict[int, tuple[str, str]] = {
    P.ESME_RINVDSTADR: (PERMANENT, ErrorCode.INVALID_NUMBER),
    P.ESME_RINVDSTTON: (PERMANENT, ErrorCode.INVALID_NUMBER),
    P.ESME_RINVDSTNPI: (PERMANENT, ErrorCode.INVALID_NUMBER),
    P.ESME_RINVMSGLEN: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVESMCLASS: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVOPTPARSTREAM: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_ROPTPARNOTALLWD: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVPARLEN: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RMISSINGOPTPARAM: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVOPTPARAMVAL: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVCMDLEN: (PERMANENT, ErrorCode.CONTENT_INVALID),
    P.ESME_RINVSRCADR: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVSRCTON: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVSRCNPI: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVSERTYP: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVSCHED: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVEXPIRY: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVREGDLVFLG: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVPRTFLG: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RINVCMDID: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RX_P_APPN: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RX_R_APPN: (PERMANENT, ErrorCode.REJECTED),
    P.ESME_RDELIVERYFAILURE: (PERMANENT, ErrorCode.UNREACHABLE),
    P.ESME_RTHROTTLED: (THROTTLE, ErrorCode.THROTTLED),
    P.ESME_RMSGQFUL: (THROTTLE, ErrorCode.THROTTLED),
    P.ESME_RSYSERR: (RETRYABLE, ErrorCode.CARRIER_ERROR),
    P.ESME_RSUBMITFAIL: (RETRYABLE, ErrorCode.CARRIER_ERROR),
    P.ESME_RX_T_APPN: (RETRYABLE, ErrorCode.CARRIER_ERROR),
    P.ESME_RINVBNDSTS: (RETRYABLE, ErrorCode.CARRIER_ERROR),
    P.ESME_RUNKNOWNERR: (RETRYABLE, ErrorCode.UNKNOWN),
    P.ESME_RINVPASWD: (AUTH, ErrorCode.AUTH_FAILED),
    P.ESME_RINVSYSID: (AUTH, ErrorCode.AUTH_FAILED),
    P.ESME_RBINDFAIL: (AUTH, ErrorCode.AUTH_FAILED),
}
_DEFAULT = (RETRYABLE, ErrorCode.CARRIER_ERROR)


def classify(status: int) -> tuple[str, str]:
    """(kind, error code) of a non-zero command_status."""
    return STATUS_TABLE.get(status, _DEFAULT)


def error_for(status: int, what: str, retry_after: float | None = None) -> ConnectorError:
    """The connector error for ``status`` answered to ``what`` (e.g. ``submit_sm``)."""
    kind, code = classify(status)
    name = P.status_name(status)
    message = f"{what} refused with {name}"
    carrier_code = name
    if kind == PERMANENT:
        return PermanentError(message, code=code, carrier_code=carrier_code)
    if kind == AUTH:
        return AuthError(message, carrier_code=carrier_code)
    return RetryableError(message, retry_after=retry_after, code=code, carrier_code=carrier_code)
