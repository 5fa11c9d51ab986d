"""The gateway's error tree; the API translates it into RFC 9457 problem documents.

    GatewayError                 (code, status, detail)
    ├── BadRequest               400 malformed_request (unparsable JSON, bad header)
    ├── UnsupportedMediaType     415 unsupported_media_type
    ├── ValidationError          422 validation_error / invalid_number / …
    ├── NotFound                 404 not_found
    ├── Unauthorized             401 unauthorized
    ├── Forbidden                403 sender_not_owned / addon_missing / plan_limit …
    │   └── DestinationBlocked   403 destination_blocked (outbound policy)
    ├── Conflict                 409 conflict / number_taken / idempotency_in_progress
    ├── CreditLimitExceeded      402 quota_credit_limit
    ├── RateLimited              429 rate_limited (Retry-After: ``retry_after`` seconds)
    ├── ChannelUnavailable       422 channel_unavailable
    ├── WindowClosed             422 whatsapp_window_closed (free-form outside 24 h)
    ├── PayloadTooLarge          413 payload_too_large
    ├── StoreUnavailable         503 store_unavailable (Retry-After; nothing was done)
    └── ConfigError              (start-up only; names the key)

Connector errors (permanent / retryable / auth) live in ``connectors/base.py`` because
they describe a carrier, not a request.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway reports to a client."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class BadRequest(GatewayError):
    """The request cannot be parsed at all (malformed JSON)."""

    status = 400
    code = "malformed_request"
    title = "Malformed request"


class UnsupportedMediaType(GatewayError):
    """The body is not in a format the route accepts."""

    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ValidationError(GatewayError):
    """The request is well-formed JSON but its content is not acceptable."""

    status = 422
    code = "validation_error"
    title = "Invalid request"


class NotFound(GatewayError):
    """The object does not exist or belongs to another team."""

    status = 404
    code = "not_found"
    title = "Not found"


class Unauthorized(GatewayError):
    """Missing or unknown API key."""

    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class Forbidden(GatewayError):
    """The caller is known but may not do this."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


# -- outbound policy (gateway/policy.py) ---------------------------------------------------
class DestinationBlocked(Forbidden):
    """The outbound policy refuses the destination (country allowlist, blocked prefix)."""

    code = "destination_blocked"
    title = "Destination blocked"


class RateLimited(GatewayError):
    """A send limit of the outbound policy is reached; ``retry_after`` says when it frees."""

    status = 429
    code = "rate_limited"
    title = "Rate limited"


# -- end outbound policy -------------------------------------------------------------------
class Conflict(GatewayError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"
    title = "Conflict"


class CreditLimitExceeded(GatewayError):
    """The send would take the team's overage past its credit limit."""

    status = 402
    code = "quota_credit_limit"
    title = "Credit limit reached"


class ChannelUnavailable(GatewayError):
    """No configured connector serves this channel (and sender)."""

    status = 422
    code = "channel_unavailable"
    title = "Channel unavailable"


class WindowClosed(GatewayError):
    """A free-form WhatsApp message outside the contact's 24-hour window (template or SMS)."""

    status = 422
    code = "whatsapp_window_closed"
    title = "WhatsApp window closed"


class PayloadTooLarge(GatewayError):
    """The upload is larger than the configured limit."""

    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class StoreUnavailable(GatewayError):
    """The store cannot be reached right now (``gateway.store.UNAVAILABLE``); try again."""

    status = 503
    code = "store_unavailable"
    title = "Service unavailable"


class ConfigError(Exception):
    """Invalid configuration; the message names the offending key."""
