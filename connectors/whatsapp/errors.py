"""The one error table of the WhatsApp Cloud API, and the Graph API error shape.

Meta answers every refusal with ``{"error": {"message", "type", "code", "error_subcode",
"error_data": {"details"}, "fbtrace_id"}}`` and sends asynchronous failures as ``failed``
status webhooks carrying ``errors: [{"code", "title", "message", "error_data"}]``. Both
are decided here by ``error.code`` (never by the HTTP status, which Meta does not keep
consistent), through :data:`RULES`:

=====================  ===========  =========================  ==============================
code                   outcome      normalized code            note
=====================  ===========  =========================  ==============================
131047                 permanent    ``whatsapp_window_closed`` 24 h since the user last wrote
131026                 permanent    ``unreachable``            not on WhatsApp / old app
130429                 retry        ``throttled``              the business number pauses 1 s
131056                 retry        ``throttled``              per recipient, 4^n seconds
131048                 permanent    ``blocked``                spam rate limit
4, 80007               retry 60 s   ``throttled``              app / account API rate limit
100, 131008, 131009    permanent    ``content_invalid``        bad or missing parameter
190                    auth         ``auth_failed``            access token expired
0, 3, 10, 200-299      auth         ``auth_failed``            authentication / permission
131005                 auth         ``auth_failed``            access denied (permission)
1, 2, 131000, 131016   retry        ``carrier_error``          temporary server problem
131057                 retry 60 s   ``carrier_error``          account in maintenance
131049                 retry 24 h   ``rejected``               held back for ecosystem health
131050, 130403         permanent    ``blocked``                user stopped marketing / blocked
131021                 permanent    ``invalid_number``         recipient is the sender
131051                 permanent    ``content_invalid``        unsupported message type
132000-132016          permanent    ``content_invalid``        template problems
131052, 131053         permanent    ``content_invalid``        media download / upload failed
368                    permanent    ``blocked``                number blocked for policy
(any other code)       permanent    ``carrier_error``
=====================  ===========  =========================  ==============================

Without a code (a proxy's answer, a broken body): 5xx and 429 are retried, 401/403 are
authentication errors, other 4xx are permanent. Network errors are retried. A code that is
not a plain number (``"²"``, thousands of digits) counts as no code: reading Meta's errors
never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.base import (
    AuthError,
    ConnectorError,
    ErrorCode,
    PermanentError,
    RetryableError,
)

PERMANENT, RETRY, AUTH = "permanent", "retry", "auth"
# How a retryable error backs off beyond ``retry_after``.
NUMBER_PAUSE, PAIR_BACKOFF = "number", "pair"
WINDOW_CLOSED = 131047
PAIR_RATE_LIMIT = 131056
THROUGHPUT_LIMIT = 130429
TOKEN_EXPIRED = 190
DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Rule:
    """What one Graph API error code means for the message and the connector."""

    outcome: str  # PERMANENT | RETRY | AUTH
    code: str  # the normalized ErrorCode stored on the message
    what: str
    retry_after: float | None = None
    backoff: str | None = None  # NUMBER_PAUSE | PAIR_BACKOFF


RULES: dict[int, Rule] = {
    WINDOW_CLOSED: Rule(
        PERMANENT,
        ErrorCode.WINDOW_CLOSED,
        "more than 24 hours since the user last wrote: only a template can be sent",
    ),
    131026: Rule(PERMANENT, ErrorCode.UNREACHABLE, "message undeliverable"),
    THROUGHPUT_LIMIT: Rule(
        RETRY,
        ErrorCode.THROTTLED,
        "throughput limit of the business number",
        retry_after=1.0,
        backoff=NUMBER_PAUSE,
    ),
    PAIR_RATE_LIMIT: Rule(
        RETRY,
        ErrorCode.THROTTLED,
        "too many messages to this user (pair rate limit)",
        backoff=PAIR_BACKOFF,
    ),
    131048: Rule(PERMANENT, ErrorCode.BLOCKED, "spam rate limit hit"),
    4: Rule(RETRY, ErrorCode.THROTTLED, "application API rate limit", retry_after=60.0),
    80007: Rule(RETRY, ErrorCode.THROTTLED, "business account API rate limit", retry_after=60.0),
    100: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "invalid parameter"),
    131008: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "required parameter missing"),
    131009: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "parameter value not valid"),
    TOKEN_EXPIRED: Rule(AUTH, ErrorCode.AUTH_FAILED, "access token expired or invalid"),
    0: Rule(AUTH, ErrorCode.AUTH_FAILED, "authentication failed"),
    3: Rule(AUTH, ErrorCode.AUTH_FAILED, "the app lacks the capability for this call"),
    10: Rule(AUTH, ErrorCode.AUTH_FAILED, "permission denied"),
    131005: Rule(AUTH, ErrorCode.AUTH_FAILED, "access denied"),
    1: Rule(RETRY, ErrorCode.CARRIER_ERROR, "unknown API error (temporary)"),
    2: Rule(RETRY, ErrorCode.CARRIER_ERROR, "API service temporarily unavailable"),
    131000: Rule(RETRY, ErrorCode.CARRIER_ERROR, "something went wrong at WhatsApp"),
    131016: Rule(RETRY, ErrorCode.CARRIER_ERROR, "WhatsApp service overloaded"),
    131057: Rule(
        RETRY, ErrorCode.CARRIER_ERROR, "business account in maintenance mode", retry_after=60.0
    ),
    131049: Rule(
        RETRY,
        ErrorCode.REJECTED,
        "held back to maintain healthy ecosystem engagement; retry after 24 hours",
        retry_after=DAY,
    ),
    131050: Rule(PERMANENT, ErrorCode.BLOCKED, "the user stopped marketing messages"),
    130403: Rule(PERMANENT, ErrorCode.BLOCKED, "the user or business is blocked"),
    131021: Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "recipient is the sender"),
    131051: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "unsupported message type"),
    131052: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "media download failed"),
    131053: Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "media upload failed"),
    368: Rule(PERMANENT, ErrorCode.BLOCKED, "temporarily blocked for policy violations"),
}
# Code ranges, checked after the exact codes.
RANGES: tuple[tuple[int, int, Rule], ...] = (
    (200, 299, Rule(AUTH, ErrorCode.AUTH_FAILED, "API permission missing")),
    (132000, 132016, Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "template problem")),
)
UNKNOWN = Rule(PERMANENT, ErrorCode.CARRIER_ERROR, "WhatsApp refused the message")
HTTP_RETRY = Rule(RETRY, ErrorCode.CARRIER_ERROR, "WhatsApp server error")
HTTP_THROTTLED = Rule(RETRY, ErrorCode.THROTTLED, "WhatsApp rate limit")
HTTP_AUTH = Rule(AUTH, ErrorCode.AUTH_FAILED, "WhatsApp refused the credentials")
HTTP_REJECTED = Rule(PERMANENT, ErrorCode.REJECTED, "WhatsApp rejected the request")
NETWORK = Rule(RETRY, ErrorCode.CARRIER_ERROR, "WhatsApp Cloud API unreachable")
TIMEOUT = Rule(RETRY, ErrorCode.TIMEOUT, "WhatsApp Cloud API did not answer in time")


def rule_for(code: int | None, http_status: int | None = None) -> Rule:
    """The rule of an error: by Meta's code when there is one, else by HTTP status."""
    if code is not None:
        rule = RULES.get(code)
        if rule is not None:
            return rule
        for low, high, ranged in RANGES:
            if low <= code <= high:
                return ranged
        return UNKNOWN
    if http_status is None or http_status >= 500:
        return HTTP_RETRY
    if http_status == 429:
        return HTTP_THROTTLED
    if http_status in (401, 403):
        return HTTP_AUTH
    return HTTP_REJECTED


@dataclass(frozen=True, slots=True)
class GraphError:
    """One error as Meta reported it (a refused call or a ``failed`` status)."""

    code: int | None
    message: str
    details: str | None = None
    http_status: int | None = None
    subcode: int | None = None
    fbtrace_id: str | None = None

    @property
    def rule(self) -> Rule:
        """The table's rule for this error."""
        return rule_for(self.code, self.http_status)

    def describe(self) -> str:
        """A one-line reason: what the table says, then what Meta said."""
        said = self.message
        if self.details and self.details not in said:
            said = f"{said} ({self.details})"
        code = f"#{self.code}" if self.code is not None else f"HTTP {self.http_status}"
        return f"{self.rule.what} [{code}: {said}]"


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text.startswith("-") else text
        # ASCII digits only ("²".isdigit() holds), and few enough for int() (4,300 at most)
        if digits.isascii() and digits.isdigit() and len(digits) <= 18:
            return int(text)
    return None


def parse_graph_error(http_status: int, body: Any) -> GraphError:
    """The error of a non-2xx Graph API answer (``body`` as parsed JSON, or anything)."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return GraphError(None, f"HTTP {http_status} without a Graph error", None, http_status)
    data = err.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    return GraphError(
        _int(err.get("code")),
        str(err.get("message") or err.get("error_user_msg") or "no message"),
        str(details) if details else None,
        http_status,
        _int(err.get("error_subcode")),
        str(err["fbtrace_id"]) if err.get("fbtrace_id") else None,
    )


def parse_status_errors(errors: Any) -> GraphError:
    """The first error of a ``failed`` status webhook's ``errors`` array."""
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return GraphError(None, "failed without an error from WhatsApp")
    data = first.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    message = first.get("message") or first.get("title") or "no message"
    return GraphError(_int(first.get("code")), str(message), str(details) if details else None)


def exception_for(err: GraphError, retry_after: float | None = None) -> ConnectorError:
    """The connector error a Graph error stands for (``retry_after`` overrides the table)."""
    rule = err.rule
    carrier_code = str(err.code) if err.code is not None else None
    message = err.describe()
    if rule.outcome == AUTH:
        return AuthError(message, carrier_code=carrier_code)
    if rule.outcome == RETRY:
        return RetryableError(
            message,
            retry_after=retry_after if retry_after is not None else rule.retry_after,
            code=rule.code,
            carrier_code=carrier_code,
        )
    return PermanentError(message, code=rule.code, carrier_code=carrier_code)


def normalized(err: GraphError) -> dict[str, Any]:
    """The normalized error stored on a message that a ``failed`` webhook reported."""
    rule = err.rule
    return {
        "code": rule.code,
        "message": err.describe(),
        "carrier_code": str(err.code) if err.code is not None else None,
        "retryable": rule.outcome == RETRY,
    }
