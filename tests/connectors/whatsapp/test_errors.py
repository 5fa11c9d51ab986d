"""The one error table of ``connectors/whatsapp/errors.py``."""

from __future__ import annotations

import pytest

from connectors.base import AuthError, ErrorCode, PermanentError, RetryableError
from connectors.whatsapp import errors
from connectors.whatsapp.errors import (
    GraphError,
    exception_for,
    normalized,
    parse_graph_error,
    parse_status_errors,
    rule_for,
)

# (code, outcome, normalized code, retry_after)
TABLE = [
    (131047, errors.PERMANENT, ErrorCode.WINDOW_CLOSED, None),
    (131026, errors.PERMANENT, ErrorCode.UNREACHABLE, None),
    (130429, errors.RETRY, ErrorCode.THROTTLED, 1.0),
    (131056, errors.RETRY, ErrorCode.THROTTLED, None),
    (131048, errors.PERMANENT, ErrorCode.BLOCKED, None),
    (4, errors.RETRY, ErrorCode.THROTTLED, 60.0),
    (80007, errors.RETRY, ErrorCode.THROTTLED, 60.0),
    (100, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (131008, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (131009, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (190, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (0, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (3, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (10, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (200, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (250, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (299, errors.AUTH, ErrorCode.AUTH_FAILED, None),
    (1, errors.RETRY, ErrorCode.CARRIER_ERROR, None),
    (2, errors.RETRY, ErrorCode.CARRIER_ERROR, None),
    (131000, errors.RETRY, ErrorCode.CARRIER_ERROR, None),
    (131016, errors.RETRY, ErrorCode.CARRIER_ERROR, None),
    (131057, errors.RETRY, ErrorCode.CARRIER_ERROR, 60.0),
    (131049, errors.RETRY, ErrorCode.REJECTED, 86_400.0),
    (131050, errors.PERMANENT, ErrorCode.BLOCKED, None),
    (130403, errors.PERMANENT, ErrorCode.BLOCKED, None),
    (132000, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (132012, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (132016, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (131052, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (131053, errors.PERMANENT, ErrorCode.CONTENT_INVALID, None),
    (999_999, errors.PERMANENT, ErrorCode.CARRIER_ERROR, None),
]


@pytest.mark.parametrize(("code", "outcome", "normal", "after"), TABLE)
def test_every_documented_code(code: int, outcome: str, normal: str, after: float | None) -> None:
    rule = rule_for(code)
    assert (rule.outcome, rule.code, rule.retry_after) == (outcome, normal, after)
    exc = exception_for(GraphError(code, "said Meta", "details", 400))
    expected = {errors.AUTH: AuthError, errors.RETRY: RetryableError}.get(outcome, PermanentError)
    assert type(exc) is expected
    assert exc.carrier_code == str(code) and exc.code == normal
    assert "said Meta" in exc.message and "details" in exc.message


def test_codes_just_outside_the_ranges_are_not_auth_or_template() -> None:
    assert rule_for(199).outcome == errors.PERMANENT and rule_for(199).code == "carrier_error"
    assert rule_for(300).outcome == errors.PERMANENT and rule_for(300).code == "carrier_error"
    assert rule_for(132017).code == ErrorCode.CARRIER_ERROR


def test_decided_by_code_not_by_http_status() -> None:
    # A 429 carrying a permanent code stays permanent; a 400 carrying 130429 is retried.
    assert rule_for(131026, 429).outcome == errors.PERMANENT
    assert rule_for(130429, 400).outcome == errors.RETRY
    assert rule_for(190, 200).outcome == errors.AUTH


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, errors.RETRY),
        (502, errors.RETRY),
        (429, errors.RETRY),
        (401, errors.AUTH),
        (403, errors.AUTH),
        (400, errors.PERMANENT),
        (404, errors.PERMANENT),
    ],
)
def test_without_a_code_the_http_status_decides(status: int, outcome: str) -> None:
    err = parse_graph_error(status, "<html>Bad Gateway</html>")
    assert err.code is None and err.rule.outcome == outcome
    assert f"HTTP {status}" in err.describe()


def test_parse_graph_error_reads_metas_shape() -> None:
    body = {
        "error": {
            "message": "(#130429) Rate limit hit",
            "type": "OAuthException",
            "code": 130429,
            "error_data": {"messaging_product": "whatsapp", "details": "throughput reached"},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }
    }
    err = parse_graph_error(400, body)
    assert err == GraphError(
        130429,
        "(#130429) Rate limit hit",
        "throughput reached",
        400,
        None,
        "Az8or2yhqkZfEZ-_4Qn_Bam",
    )
    exc = exception_for(err)
    assert isinstance(exc, RetryableError) and exc.retry_after == 1.0
    assert exception_for(err, retry_after=16.0).retry_after == 16.0  # type: ignore[attr-defined]


def test_status_errors_normalize_like_metas_failed_example() -> None:
    err = parse_status_errors(
        [
            {
                "code": 131047,
                "title": "Re-engagement message",
                "message": "Re-engagement message",
                "error_data": {"details": "more than 24 hours"},
            }
        ]
    )
    assert normalized(err) == {
        "code": "whatsapp_window_closed",
        "message": (
            "more than 24 hours since the user last wrote: only a template can be sent "
            "[#131047: Re-engagement message (more than 24 hours)]"
        ),
        "carrier_code": "131047",
        "retryable": False,
    }
    assert normalized(parse_status_errors([{"code": 131000}]))["retryable"] is True
    missing = normalized(parse_status_errors(None))
    assert missing["carrier_code"] is None and missing["code"] == ErrorCode.CARRIER_ERROR
