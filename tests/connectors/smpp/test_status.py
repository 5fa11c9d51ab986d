"""command_status → the gateway's error tree, through the one table."""

from __future__ import annotations

import pytest

from connectors.base import AuthError, ErrorCode, PermanentError, RetryableError
from connectors.smpp import pdu as P
from connectors.smpp.status import error_for


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (P.ESME_RINVDSTADR, PermanentError, ErrorCode.INVALID_NUMBER),
        (P.ESME_RINVMSGLEN, PermanentError, ErrorCode.CONTENT_INVALID),
        (P.ESME_RINVSRCADR, PermanentError, ErrorCode.REJECTED),
        (P.ESME_RX_R_APPN, PermanentError, ErrorCode.REJECTED),
        (P.ESME_RTHROTTLED, RetryableError, ErrorCode.THROTTLED),
        (P.ESME_RMSGQFUL, RetryableError, ErrorCode.THROTTLED),
        (P.ESME_RSYSERR, RetryableError, ErrorCode.CARRIER_ERROR),
        (P.ESME_RSUBMITFAIL, RetryableError, ErrorCode.CARRIER_ERROR),
        (P.ESME_RX_T_APPN, RetryableError, ErrorCode.CARRIER_ERROR),
        (0x0400, RetryableError, ErrorCode.CARRIER_ERROR),  # vendor specific
        (P.ESME_RINVPASWD, AuthError, ErrorCode.AUTH_FAILED),
    ],
)
def test_table(status: int, cls: type, code: str) -> None:
    exc = error_for(status, "submit_sm")
    assert type(exc) is cls and exc.code == code
    assert exc.carrier_code == P.status_name(status)
    assert P.status_name(status) in exc.message


def test_retry_after_passes_through() -> None:
    exc = error_for(P.ESME_RTHROTTLED, "submit_sm", retry_after=1.5)
    assert isinstance(exc, RetryableError) and exc.retry_after == 1.5
