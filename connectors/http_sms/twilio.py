"""The Twilio-compatible HTTP SMS connector (kind ``twilio``).

Sending: ``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``, form-encoded
``To``, ``From``, ``Body`` (and ``StatusCallback``, ``MessagingServiceSid``), HTTP Basic
(account SID, auth token). The carrier's ``sid`` becomes the message's carrier id, its
``num_segments`` the billed segments, its ``status`` goes into the message's meta.
``base_url`` makes any carrier that speaks this API shape usable.

Webhooks, mounted under ``/hooks/{connector_id}``:

- ``POST /hooks/{id}/status`` — status callbacks (``MessageSid``, ``MessageStatus``,
  ``ErrorCode``). The connector sends ``{public_url}/hooks/{id}/status`` as each
  message's ``StatusCallback`` (option ``status_callback``: ``true`` by default,
  ``false`` for none, or a URL of your own that reaches this route).
- ``POST /hooks/{id}/inbound`` — inbound SMS; configure
  ``{public_url}/hooks/{id}/inbound`` as the number's "a message comes in" webhook.
  Answered with an empty TwiML ``<Response/>``.

Every webhook must carry a valid ``X-Twilio-Signature``, computed over the public URL
(``public_url`` + the hook's path + the query string): behind a proxy the scheme, host and
path the app sees differ from what the carrier requested. Only when ``public_url`` is
empty is the URL of the request itself used. Missing or wrong signatures are answered
``403`` (as Twilio's documentation does) and nothing is stored; bodies other than
``application/x-www-form-urlencoded`` are answered ``415``, larger than 64 KiB ``413``,
forms that are not UTF-8 or have more than 500 fields ``400``. A ``NumSegments`` that no
SMS can have (over 255) is counted from the text instead, and ``NumMedia`` is read no
further than the form's fields go.

A 2xx answer to a send whose body cannot be read is taken as accepted (the carrier said
it created the message): retrying could send the SMS twice, failing it would refund a
message the recipient may get. The message is marked ``sent`` with
``meta.carrier_response_unreadable`` (and the sid, when one can be found in the body) and
a warning is logged. Timeouts and network errors, on the other hand, are retried: the
Messages API has no idempotency key, so a read timeout after the carrier accepted the
message can send it twice — the price of never losing one.

Errors are mapped in one table (``RULES``): 401/403/404/3xx and code 20003 stop the
connector for the operator (``AuthError``: the message waits, ``/readyz`` shows why, and
after ``auth_retry`` seconds the next send tries again); 429/20429 and 5xx are retried
honouring ``Retry-After``; the REST and delivery codes (21211, 21610, 30003, …) map to
normalized permanent or retryable errors; any other 4xx fails the message as
``rejected`` with the carrier's code and words.

Options: ``account_sid``, ``auth_token`` (required), ``base_url``
(``https://api.twilio.com``), ``messaging_service_sid``, ``status_callback`` (``true``),
``public_url`` (the gateway's), ``timeout`` (15 s), ``auth_retry`` (60 s).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.base import (
    AuthError,
    ConnectorContext,
    ConnectorError,
    ErrorCode,
    Health,
    InboundAttachment,
    InboundMessage,
    NotReadyError,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
    StatusReport,
    register,
)
from connectors.http_sms import signature
from gateway import jsoncodec
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from gateway.models import JobHandler
from gateway.retry import retry_after_seconds
from gateway.units import sms_info

log = logging.getLogger("connectors.http_sms")

API_VERSION = "2010-04-01"
DEFAULT_BASE_URL = "https://api.twilio.com"
DEFAULT_TIMEOUT = 15.0
DEFAULT_AUTH_RETRY = 60.0
# Twilio's webhooks are a few hundred bytes (a 1600-character body at most, plus media
# URLs); anything much larger is not a carrier talking.
MAX_WEBHOOK_BYTES = 64 * 1024
MAX_WEBHOOK_FIELDS = 500
MAX_SEGMENTS = 255  # TS 23.040: the concatenation header counts parts in one octet
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
_OPTIONS = frozenset(
    {
        "base_url",
        "account_sid",
        "auth_token",
        "messaging_service_sid",
        "status_callback",
        "public_url",
        "timeout",
        "auth_retry",
    }
)
_SID_IN_TEXT = re.compile(r"\b(?:SM|MM)[0-9a-fA-F]{32}\b")

# -- the one error table -------------------------------------------------------------------
PERMANENT, RETRY, AUTH = "permanent", "retry", "auth"


@dataclass(frozen=True, slots=True)
class Rule:
    """What a carrier error means: fail, retry later, or stop for the operator."""

    outcome: str
    code: str
    what: str


# Keys: Twilio error codes (REST answers and the ErrorCode of status callbacks alike),
# "http:NNN" / "http:Nxx" for HTTP statuses, "network" and "timeout" for transport
# failures. Lookup order is in ``rule_for``.
RULES: dict[str, Rule] = {
    # HTTP statuses.
    "http:3xx": Rule(
        AUTH, ErrorCode.AUTH_FAILED, "carrier redirected the request (check base_url)"
    ),
    "http:401": Rule(AUTH, ErrorCode.AUTH_FAILED, "carrier refused the credentials"),
    "http:403": Rule(AUTH, ErrorCode.AUTH_FAILED, "carrier refused the credentials"),
    "http:404": Rule(
        AUTH, ErrorCode.AUTH_FAILED, "carrier endpoint not found (check base_url, account_sid)"
    ),
    "http:408": Rule(RETRY, ErrorCode.TIMEOUT, "carrier timed out the request"),
    "http:413": Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "carrier found the request too large"),
    "http:429": Rule(RETRY, ErrorCode.THROTTLED, "carrier rate limit"),
    "http:4xx": Rule(PERMANENT, ErrorCode.REJECTED, "carrier rejected the message"),
    "http:5xx": Rule(RETRY, ErrorCode.CARRIER_ERROR, "carrier server error"),
    "network": Rule(RETRY, ErrorCode.CARRIER_ERROR, "carrier unreachable"),
    "timeout": Rule(RETRY, ErrorCode.TIMEOUT, "carrier did not answer in time"),
    # Account and API.
    "20003": Rule(AUTH, ErrorCode.AUTH_FAILED, "carrier refused the credentials"),
    "20005": Rule(AUTH, ErrorCode.AUTH_FAILED, "account not active"),
    "20404": Rule(AUTH, ErrorCode.AUTH_FAILED, "resource not found (check account_sid)"),
    "20429": Rule(RETRY, ErrorCode.THROTTLED, "too many requests"),
    # Sending (REST answers).
    "21211": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "invalid 'To' number"),
    "21614": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "'To' is not a mobile number"),
    "21601": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "number is not SMS-capable"),
    "21604": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "'To' number is missing"),
    "21610": Rule(PERMANENT, ErrorCode.BLOCKED, "recipient unsubscribed (STOP)"),
    "21408": Rule(PERMANENT, ErrorCode.BLOCKED, "sending to this region is not enabled"),
    "21612": Rule(PERMANENT, ErrorCode.BLOCKED, "the carrier cannot route to this number"),
    "21608": Rule(PERMANENT, ErrorCode.BLOCKED, "trial account: recipient not verified"),
    "21617": Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "body exceeds 1600 characters"),
    "21602": Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "body is missing"),
    "21212": Rule(PERMANENT, ErrorCode.REJECTED, "invalid 'From' number"),
    "21606": Rule(PERMANENT, ErrorCode.REJECTED, "'From' cannot send to this destination"),
    "21611": Rule(RETRY, ErrorCode.THROTTLED, "'From' number has too many queued messages"),
    # Delivery (status callbacks' ErrorCode; a few also come back from the REST API).
    "30001": Rule(RETRY, ErrorCode.THROTTLED, "carrier queue overflow"),
    "30002": Rule(PERMANENT, ErrorCode.BLOCKED, "account suspended"),
    "30003": Rule(RETRY, ErrorCode.UNREACHABLE, "destination handset unreachable"),
    "30004": Rule(PERMANENT, ErrorCode.BLOCKED, "message blocked"),
    "30005": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "unknown destination handset"),
    "30006": Rule(PERMANENT, ErrorCode.INVALID_NUMBER, "landline or unreachable carrier"),
    "30007": Rule(PERMANENT, ErrorCode.BLOCKED, "filtered by the carrier"),
    "30008": Rule(RETRY, ErrorCode.UNKNOWN, "unknown carrier error"),
    "30009": Rule(RETRY, ErrorCode.CARRIER_ERROR, "missing segment"),
    "30010": Rule(PERMANENT, ErrorCode.REJECTED, "price exceeds the maximum price"),
    "30017": Rule(RETRY, ErrorCode.UNREACHABLE, "carrier network congestion"),
    "30018": Rule(PERMANENT, ErrorCode.BLOCKED, "sender ID must be registered"),
    "30019": Rule(PERMANENT, ErrorCode.CONTENT_INVALID, "content exceeds the carrier's limit"),
    "30022": Rule(RETRY, ErrorCode.THROTTLED, "A2P 10DLC rate limit exceeded"),
    "30023": Rule(RETRY, ErrorCode.THROTTLED, "A2P 10DLC daily cap reached"),
    "30024": Rule(PERMANENT, ErrorCode.BLOCKED, "numeric sender ID not provisioned"),
    "30032": Rule(PERMANENT, ErrorCode.BLOCKED, "toll-free number not verified"),
    "30034": Rule(PERMANENT, ErrorCode.BLOCKED, "unregistered A2P 10DLC number"),
    "30036": Rule(PERMANENT, ErrorCode.EXPIRED, "validity period expired"),
    "30410": Rule(RETRY, ErrorCode.TIMEOUT, "carrier timeout"),
}
_DELIVERY_DEFAULT = Rule(PERMANENT, ErrorCode.CARRIER_ERROR, "carrier error")


def rule_for(http_status: int | None, carrier_code: str | None) -> Rule:
    """The rule of one error: 5xx and 429 by status; then the carrier's code; then status."""
    if http_status is not None:
        if http_status >= 500:
            return RULES["http:5xx"]
        if http_status == 429:
            return RULES["http:429"]
    if carrier_code is not None and carrier_code in RULES:
        return RULES[carrier_code]
    if http_status is None:
        return _DELIVERY_DEFAULT
    exact = RULES.get(f"http:{http_status}")
    if exact is not None:
        return exact
    return RULES["http:3xx"] if http_status < 400 else RULES["http:4xx"]


def error_from(
    rule: Rule, message: str, carrier_code: str | None, retry_after: float | None = None
) -> ConnectorError:
    """The exception a rule stands for."""
    if rule.outcome == AUTH:
        return AuthError(message, carrier_code=carrier_code)
    if rule.outcome == RETRY:
        return RetryableError(
            message, retry_after=retry_after, code=rule.code, carrier_code=carrier_code
        )
    return PermanentError(message, code=rule.code, carrier_code=carrier_code)


# -- status callbacks ----------------------------------------------------------------------
# The carrier's message statuses → the gateway's; None: no news for the gateway (the
# message is already "sent" once the carrier has accepted it).
STATUSES: dict[str, str | None] = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
    # Partially delivered (some parts failed): neither "delivered" nor surely failed.
    "partially_delivered": None,
}


def delivery_error(carrier_status: str, error_code: str | None) -> dict[str, Any]:
    """The normalized error of a failed/undelivered/canceled callback."""
    if carrier_status == "canceled":
        rule = Rule(PERMANENT, ErrorCode.REJECTED, "message canceled")
    elif error_code:
        rule = rule_for(None, error_code)
    elif carrier_status == "undelivered":
        rule = Rule(RETRY, ErrorCode.UNKNOWN, "undelivered (no error code given)")
    else:
        rule = _DELIVERY_DEFAULT
    detail = f"{rule.what} (carrier {carrier_status}"
    detail += f", error {error_code})" if error_code else ")"
    return {
        "code": rule.code,
        "message": detail,
        "carrier_code": error_code or carrier_status,
        "retryable": rule.outcome != PERMANENT,
    }


def _int(value: Any, default: int | None = None) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def _segments(value: Any) -> int | None:
    """A carrier's segment count, if it can be one: a concatenated SMS has at most 255
    parts (and the stores hold 64-bit integers)."""
    number = _int(value)
    return number if number is not None and number <= MAX_SEGMENTS else None


def _inbound_segments(given: str | None, body: str) -> int:
    """The carrier's NumSegments; counted from the text when it is missing or bad."""
    number = _segments(given)
    if number:
        return number
    return sms_info(body).segments if body else 1


# -- options -------------------------------------------------------------------------------
def _option_str(config: ConnectorConfig, key: str, *, required: bool = False) -> str | None:
    where = f"connectors[{config.id}].{key}"
    value = config.options.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}: required")
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    value = value.strip()
    if not value and required:
        raise ConfigError(f"{where}: required (it is empty)")
    return value or None


def _option_url(config: ConnectorConfig, key: str, default: str | None) -> str | None:
    value = _option_str(config, key)
    if value is None:
        return default
    if not value.startswith(("http://", "https://")):
        raise ConfigError(f"connectors[{config.id}].{key}: must start with http:// or https://")
    return value.rstrip("/")


def _option_seconds(config: ConnectorConfig, key: str, default: float) -> float:
    value = config.options.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"connectors[{config.id}].{key}: expected a number of seconds > 0, got {value!r}"
        )
    return float(value)


class TwilioConnector:
    """SMS through a carrier that speaks the Twilio Messages API."""

    kind = "twilio"

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        unknown = sorted(set(config.options) - _OPTIONS)
        if unknown:
            raise ConfigError(
                f"connectors[{config.id}].{unknown[0]}: unknown option of kind twilio "
                f"(known: {', '.join(sorted(_OPTIONS))})"
            )
        if config.channels != frozenset({"sms"}):
            raise ConfigError(
                f"connectors[{config.id}].channels: kind twilio carries sms only, "
                f"got {sorted(config.channels)}"
            )
        self.id = config.id
        self.channels = config.channels
        self.numbers = config.numbers
        self.ctx = ctx
        self.account_sid = str(_option_str(config, "account_sid", required=True))
        self.auth_token = str(_option_str(config, "auth_token", required=True))
        self.base_url = str(_option_url(config, "base_url", DEFAULT_BASE_URL))
        self.messaging_service_sid = _option_str(config, "messaging_service_sid")
        self.public_url = _option_url(config, "public_url", ctx.public_url.rstrip("/") or None)
        self.timeout = _option_seconds(config, "timeout", DEFAULT_TIMEOUT)
        self.auth_retry = timedelta(
            seconds=_option_seconds(config, "auth_retry", DEFAULT_AUTH_RETRY)
        )
        callback = config.options.get("status_callback", True)
        if isinstance(callback, bool):
            self.status_callback_url = self.hook_url("/status") if callback else None
            self._custom_callback = False
        else:
            self.status_callback_url = _option_url(config, "status_callback", None)
            self._custom_callback = True
        if self.status_callback_url is None and callback is True:
            log.warning("connector %s: no public_url, so no status callbacks", self.id)
        account = f"{self.base_url}/{API_VERSION}/Accounts/{quote(self.account_sid, safe='')}"
        self.account_url = f"{account}.json"
        self.messages_url = f"{account}/Messages.json"
        self._auth_failed_at: datetime | None = None
        self._auth_detail = ""

    def hook_url(self, path: str) -> str | None:
        """The public URL of one of this connector's webhooks (None without public_url)."""
        if not self.public_url:
            return None
        return f"{self.public_url}/hooks/{self.id}{path}"

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Check the credentials against the carrier's account resource."""
        try:
            response = await self.ctx.http.get(
                self.account_url,
                auth=(self.account_sid, self.auth_token),
                timeout=self.timeout,
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise NotReadyError(f"carrier unreachable at {self.base_url}: {exc!r}") from None
        if response.is_success:
            self._auth_failed_at = None
            return
        error = self._error(response)
        if isinstance(error, AuthError):
            raise error
        raise NotReadyError(f"carrier answered {response.status_code}: {error.message}")

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """No durable jobs of its own."""
        return {}

    def health(self) -> Health:
        """Unhealthy for ``auth_retry`` seconds after the carrier refused the credentials."""
        failed = self._auth_failed_at
        if failed is not None and self.ctx.clock.now() < failed + self.auth_retry:
            return Health(False, self._auth_detail)
        return Health(True)

    async def aclose(self) -> None:
        """Nothing to close: the HTTP client belongs to the runtime."""

    # -- sending -----------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SendResult:
        """POST the message to the carrier's Messages resource."""
        if message.attachments:
            raise PermanentError(
                "this connector sends text SMS only (no MMS attachments)",
                code=ErrorCode.CONTENT_INVALID,
            )
        if not message.text:
            raise PermanentError("an SMS needs text", code=ErrorCode.CONTENT_INVALID)
        form = {"To": message.to, "From": message.from_, "Body": message.text}
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if self.status_callback_url:
            form["StatusCallback"] = self.status_callback_url
        try:
            response = await self.ctx.http.post(
                self.messages_url,
                data=form,
                auth=(self.account_sid, self.auth_token),
                timeout=self.timeout,
                headers={"Accept": "application/json"},
            )
        except httpx.TimeoutException as exc:
            # A read timeout may come after the carrier accepted the message: the retry
            # then sends it twice; losing it would be worse (see the module docstring).
            rule = RULES["timeout"]
            raise error_from(rule, f"{rule.what} ({self.timeout:g} s): {exc!r}", None) from None
        except httpx.TransportError as exc:
            rule = RULES["network"]
            raise error_from(rule, f"{rule.what}: {exc!r}", None) from None
        if response.is_success:
            self._auth_failed_at = None
            return self._accepted(response, message)
        raise self._error(response)

    def _accepted(self, response: httpx.Response, message: OutboundMessage) -> SendResult:
        try:
            doc = jsoncodec.loads_external(response.content)
            sid = doc["sid"]
            if not isinstance(sid, str) or not sid:
                raise TypeError("sid is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            found = _SID_IN_TEXT.search(response.text)
            carrier_id = found.group(0) if found else f"unknown-{message.id}"
            log.warning(
                "connector %s: carrier answered %s to message %s with an unreadable body (%s); "
                "taken as accepted (a retry could send it twice), carrier id %s",
                self.id,
                response.status_code,
                message.id,
                exc,
                carrier_id,
            )
            return SendResult(
                carrier_id,
                None,
                {"carrier_status": None, "carrier_response_unreadable": response.text[:500]},
            )
        status = str(doc.get("status") or "") or None
        if status in {"failed", "undelivered", "canceled"}:
            code = _int(doc.get("error_code"))
            error = delivery_error(status, str(code) if code is not None else None)
            raise PermanentError(
                f"carrier answered {status}: {error['message']}",
                code=str(error["code"]),
                carrier_code=str(error["carrier_code"]),
            )
        meta: dict[str, Any] = {"carrier_status": status}
        if doc.get("messaging_service_sid"):
            meta["messaging_service_sid"] = doc["messaging_service_sid"]
        return SendResult(sid, _segments(doc.get("num_segments")), meta)

    def _error(self, response: httpx.Response) -> ConnectorError:
        """Map a non-2xx answer through the one error table."""
        code: str | None = None
        text = response.reason_phrase or "no reason given"
        try:
            doc = jsoncodec.loads_external(response.content)
        except ValueError:
            if response.text.strip():
                text = response.text.strip()[:300]
        else:
            if isinstance(doc, dict):
                number = _int(doc.get("code"))
                code = str(number) if number is not None else None
                text = str(doc.get("message") or doc.get("detail") or text)
        rule = rule_for(response.status_code, code)
        if rule is RULES["http:3xx"]:
            text = f"{text}; Location: {response.headers.get('Location', '-')}"
        message = f"{rule.what}: HTTP {response.status_code}"
        message += f", code {code}: {text}" if code else f": {text}"
        after = retry_after_seconds(response.headers.get("Retry-After"), self.ctx.clock.now())
        error = error_from(rule, message, code or f"http_{response.status_code}", after)
        if isinstance(error, AuthError):
            self._auth_failed_at = self.ctx.clock.now()
            self._auth_detail = message
        return error

    # -- webhooks ----------------------------------------------------------------------
    def routes(self) -> Sequence[BaseRoute]:
        """``/status`` (status callbacks) and ``/inbound`` (inbound SMS); form bodies."""
        return [
            Route("/status", self.status_webhook, methods=["POST"]),
            Route("/inbound", self.inbound_webhook, methods=["POST"]),
        ]

    def signed_url(self, request: Request, path: str) -> str:
        """The URL the carrier signed: the public one (plus query), else the request's."""
        if path == "/status" and self._custom_callback and self.status_callback_url:
            return self.status_callback_url
        public = self.hook_url(path)
        if public is None:
            return str(request.url)
        query = request.url.query
        return f"{public}?{query}" if query else public

    async def _verified_form(self, request: Request, path: str) -> list[tuple[str, str]] | Response:
        """The POST parameters, or the response refusing the request (nothing stored)."""
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != FORM:
            return PlainTextResponse(
                f"expected {FORM}, got {media_type or 'no Content-Type'}", status_code=415
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return PlainTextResponse(
                    f"body larger than {MAX_WEBHOOK_BYTES} bytes", status_code=413
                )
        try:
            params = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                errors="strict",
                max_num_fields=MAX_WEBHOOK_FIELDS,
            )
        except UnicodeDecodeError:
            return PlainTextResponse("the form is not valid UTF-8", status_code=400)
        except ValueError as exc:
            return PlainTextResponse(f"malformed form: {exc}", status_code=400)
        url = self.signed_url(request, path)
        given = request.headers.get("x-twilio-signature")
        if not given:
            log.warning("connector %s: webhook %s without X-Twilio-Signature", self.id, path)
            return PlainTextResponse("missing X-Twilio-Signature", status_code=403)
        if not signature.verify(self.auth_token, url, params, given):
            log.warning(
                "connector %s: X-Twilio-Signature does not match for %s (check public_url "
                "and the URL configured at the carrier)",
                self.id,
                url,
            )
            return PlainTextResponse("X-Twilio-Signature does not match", status_code=403)
        return params

    async def status_webhook(self, request: Request) -> Response:
        """A status callback: move the message's status forward."""
        form = await self._verified_form(request, "/status")
        if isinstance(form, Response):
            return form
        params = dict(form)
        sid = params.get("MessageSid") or params.get("SmsSid")
        carrier_status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
        if not sid or not carrier_status:
            return PlainTextResponse("MessageSid and MessageStatus are required", status_code=400)
        if carrier_status not in STATUSES:
            log.warning(
                "connector %s: unknown MessageStatus %r for %s", self.id, carrier_status, sid
            )
            return Response(status_code=204)
        status = STATUSES[carrier_status]
        if status is None:
            return Response(status_code=204)
        error = None
        if status == "failed":
            error = delivery_error(carrier_status, params.get("ErrorCode") or None)
        await self.ctx.sink.status(StatusReport(self.id, sid, status, self.ctx.clock.now(), error))
        return Response(status_code=204)

    async def inbound_webhook(self, request: Request) -> Response:
        """An inbound SMS: hand it to the gateway, answer with empty TwiML."""
        form = await self._verified_form(request, "/inbound")
        if isinstance(form, Response):
            return form
        params = dict(form)
        sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
        sender, recipient = params.get("From"), params.get("To")
        if not sid or not sender or not recipient:
            return PlainTextResponse("MessageSid, From and To are required", status_code=400)
        media: list[dict[str, str]] = []
        # A form of MAX_WEBHOOK_FIELDS fields holds fewer media than that: never loop longer.
        for i in range(min(_int(params.get("NumMedia"), 0) or 0, MAX_WEBHOOK_FIELDS)):
            url = params.get(f"MediaUrl{i}")
            if url:
                kind = params.get(f"MediaContentType{i}") or "application/octet-stream"
                media.append({"url": url, "content_type": kind})
        body = params.get("Body", "")
        meta: dict[str, Any] = {}
        if media:
            meta["media"] = media  # fetched by nobody yet: kept so that nothing is lost
        for key in ("FromCountry", "MessagingServiceSid"):
            if params.get(key):
                meta[key] = params[key]
        await self.ctx.sink.inbound(
            InboundMessage(
                connector_id=self.id,
                channel="sms",
                carrier_id=sid,
                from_=sender,
                to=recipient,
                text=body if body or not media else None,
                received_at=self.ctx.clock.now(),
                attachments=[
                    InboundAttachment(m["content_type"], reference=m["url"]) for m in media
                ],
                segments=_inbound_segments(params.get("NumSegments"), body),
                meta=meta,
            )
        )
        return Response(TWIML_EMPTY, media_type="text/xml")


register("twilio", TwilioConnector)
