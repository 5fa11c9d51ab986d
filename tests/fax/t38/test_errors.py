"""The fax error tree and the T.30 completion-code table."""

from __future__ import annotations

import pytest

from fax.t38 import spandsp
from fax.t38.errors import (
    FaxCallDroppedError,
    FaxDocumentError,
    FaxError,
    FaxNoResponseError,
    FaxPhaseBError,
    FaxPhaseCError,
    FaxPhaseDError,
    FaxProtocolError,
    FaxRefusedError,
    error_for_code,
)


def test_ok_is_no_error() -> None:
    assert error_for_code(0) is None


def test_every_t30_code_has_a_specific_group() -> None:
    for code in range(1, 62):
        error = error_for_code(code, spandsp.completion_code_to_str(code))
        assert isinstance(error, FaxError)
        assert type(error) is not FaxProtocolError, f"code {code} is not grouped"
        assert error.code == code
        assert str(error) == spandsp.completion_code_to_str(code)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (2, FaxNoResponseError),  # T0 expired: nobody answered with fax tones
        (6, FaxPhaseBError),  # cannot train
        (20, FaxPhaseBError),  # no response to DCS/TCF
        (27, FaxPhaseCError),  # timed out waiting for EOL
        (21, FaxPhaseDError),  # no response after a page
        (48, FaxPhaseDError),  # disconnected after permitted retries
        (49, FaxCallDroppedError),
        (8, FaxRefusedError),  # incompatible
        (11, FaxRefusedError),  # cannot receive at this resolution
        (43, FaxDocumentError),  # bad TIFF
    ],
)
def test_groups(code: int, cls: type[FaxError]) -> None:
    assert type(error_for_code(code)) is cls


def test_protocol_errors_share_a_base_for_the_retry_ladder() -> None:
    for cls in (FaxPhaseBError, FaxPhaseCError, FaxPhaseDError, FaxCallDroppedError):
        assert issubclass(cls, FaxProtocolError)
    for cls in (FaxRefusedError, FaxNoResponseError, FaxDocumentError):
        assert not issubclass(cls, FaxProtocolError)


def test_unknown_code_is_a_protocol_error() -> None:
    error = error_for_code(999)
    assert type(error) is FaxProtocolError
    assert "999" in str(error)
