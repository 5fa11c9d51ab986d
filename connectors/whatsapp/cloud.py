"""The WhatsApp Cloud API connector (kind ``whatsapp_cloud``).

Configuration (``[[connectors]]``, ``channels = ["whatsapp"]``)::

    [[connectors]]
    id = "whatsapp"
    kind = "whatsapp_cloud"
    channels = ["whatsapp"]
    graph_url = "https://graph.facebook.com/v25.0"     # the default
    access_token = "${WHATSAPP_TOKEN}"                   # a system user's token
    app_secret = "${WHATSAPP_APP_SECRET}"                # signs Meta's webhooks
    verify_token = "${WHATSAPP_VERIFY_TOKEN}"            # chosen by you, for the GET check
    phone_number_ids = { "+4915112345671" = "106540352242922" }
    throughput = 80              # messages/s per business number, or a table per number
    # burst = 8                  # sends allowed at once (default: a tenth of the rate)
    # timeout = 15               # seconds per Graph API request
    # media_max_bytes = 104857600  # largest inbound media downloaded
    # auth_probe_seconds = 60    # how often an unhealthy connector re-checks its token

The keys of ``phone_number_ids`` (E.164) are the connector's ``numbers``; ``numbers``,
if given as well, must name only those.

Webhook: configure ``{public_url}/hooks/{id}`` (with or without a trailing slash) as the
callback URL in Meta's App Dashboard, with ``verify_token``, subscribed to ``messages``. ``GET``
answers the verification challenge; ``POST`` must carry a valid ``X-Hub-Signature-256``
(else ``401``, nothing stored); bodies over 3 MB get ``413``, unparsable JSON ``400`` (so
does JSON the gateway could not store again: nested deeper than 64 levels, NaN, lone
surrogates — :func:`gateway.jsoncodec.loads_external`).
Everything else is answered ``200`` as soon as messages and statuses are handed to the
gateway; inbound media is downloaded afterwards by a durable ``whatsapp_media`` job (see
``receive_media``): the message is stored, with its attachment, once the bytes are in.

Sending reads ``OutboundMessage.meta["whatsapp"]`` (all keys optional)::

    {"template": {"name": "order_update", "language": "de",      # or {"code": "de"}
                  "components": [...]},                           # Meta's components
     "context": "wamid.…",                                        # reply to this message
     "preview_url": true}                                         # link preview for text

A template is sent as such (the only message allowed outside the 24-hour window; the
message's text is then only the gateway's copy). Otherwise one attachment (caption = the
text, ≤ 1024 characters; audio and stickers carry none) or the text (≤ 4096 characters).
Attachments are checked against WhatsApp's type and size limits, uploaded to ``/media``
(the id is reused for 29 days) and sent by id.

Errors are decided by Meta's ``error.code`` (:mod:`connectors.whatsapp.errors`). 130429
pauses the business number for a second; 131056 backs off that recipient 4^n seconds.
Token and permission errors (190, 0, 3, 10, 200-299, 131005) raise ``AuthError`` and make
``health()`` unhealthy: the dispatcher keeps messages queued (no attempt used) and
``/readyz`` answers 503. It recovers by itself: every ``auth_probe_seconds`` the connector
re-checks the token (``GET /{phone_number_id}``), and any later successful Graph call
clears it; an expired token (190) needs a new ``access_token`` and a restart.

A send that times out may have reached Meta (the Cloud API has no idempotency key): it is
retried, so the recipient may rarely get it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
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
    OutboundAttachment,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
    register,
)
from connectors.whatsapp import errors, media, webhook
from connectors.whatsapp.errors import GraphError, exception_for, parse_graph_error
from connectors.whatsapp.throughput import DEFAULT_RATE, NumberLimiter, PairBackoff
from connectors.whatsapp.webhook import MediaRef, ParsedInbound
from gateway import jsoncodec
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from gateway.models import Job, JobHandler
from gateway.numbers import normalize
from gateway.retry import Retry, backoff, in_process

log = logging.getLogger("connectors.whatsapp")

KIND = "whatsapp_cloud"
DEFAULT_GRAPH_URL = "https://graph.facebook.com/v25.0"
MAX_TEXT = 4096
MAX_WEBHOOK_BYTES = 3 * 1024 * 1024
MEDIA_JOB = "whatsapp_media"
# Attempts of a media job before the message is stored without its media.
MEDIA_ATTEMPTS = 6
# Between attempts: 5 s, 10 s, 20 s … (at most ten minutes).
MEDIA_RETRY_BASE = timedelta(seconds=5)
MEDIA_RETRY_MAX = timedelta(minutes=10)
MEDIA_ID_TTL = 29 * 86_400.0  # Meta keeps uploaded media 30 days
_SEEN_MAX = 20_000
_MEDIA_CACHE_MAX = 1_000
_OPTIONS = frozenset(
    {
        "graph_url",
        "access_token",
        "app_secret",
        "verify_token",
        "phone_number_ids",
        "throughput",
        "burst",
        "timeout",
        "media_max_bytes",
        "auth_probe_seconds",
    }
)


@dataclass(frozen=True, slots=True)
class Options:
    """The connector's own keys of its ``[[connectors]]`` table, checked."""

    graph_url: str
    access_token: str
    app_secret: str
    verify_token: str
    phone_number_ids: dict[str, str]  # E.164 business number → Meta's phone_number_id
    throughput: dict[str, float]  # phone_number_id → messages per second
    default_throughput: float
    burst: int | None
    timeout: float
    media_max_bytes: int
    auth_probe_seconds: float


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def parse_options(config: ConnectorConfig) -> Options:
    """Check the options of a ``whatsapp_cloud`` table; errors name the key."""
    where = f"connectors[{config.id}]"
    opts = config.options
    unknown = sorted(set(opts) - _OPTIONS)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown option of kind {KIND}")
    if set(config.channels) != {"whatsapp"}:
        raise ConfigError(f"{where}.channels: a {KIND} connector carries only 'whatsapp'")

    def text(key: str, default: str | None = None) -> str:
        value = opts.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key}: required, a non-empty string")
        return value.strip()

    graph_url = text("graph_url", DEFAULT_GRAPH_URL).rstrip("/")
    if not graph_url.startswith(("https://", "http://")):
        raise ConfigError(f"{where}.graph_url: expected an http(s) URL, got {graph_url!r}")
    raw_ids = opts.get("phone_number_ids")
    if not isinstance(raw_ids, dict) or not raw_ids:
        raise ConfigError(
            f'{where}.phone_number_ids: required, a table {{ "+49…" = "<phone_number_id>" }}'
        )
    ids: dict[str, str] = {}
    for number, pnid in raw_ids.items():
        try:
            e164 = normalize(str(number), "ZZ")  # no region: E.164 with '+' only
        except Exception as exc:
            raise ConfigError(f"{where}.phone_number_ids: {exc}") from None
        if isinstance(pnid, bool) or not str(pnid).strip().isdigit():
            raise ConfigError(
                f"{where}.phone_number_ids.{number}: expected Meta's numeric id, got {pnid!r}"
            )
        ids[e164] = str(pnid).strip()
    if len(set(ids.values())) != len(ids):
        raise ConfigError(f"{where}.phone_number_ids: two numbers share a phone_number_id")
    if config.numbers is not None and not config.numbers <= set(ids):
        extra = ", ".join(sorted(config.numbers - set(ids)))
        raise ConfigError(f"{where}.numbers: {extra} has no entry in phone_number_ids")
    raw_tp = opts.get("throughput", DEFAULT_RATE)
    per_number: dict[str, float] = {}
    default_tp = DEFAULT_RATE
    if isinstance(raw_tp, dict):
        for number, rate in raw_tp.items():
            try:
                e164 = normalize(str(number), "ZZ")
            except Exception as exc:
                raise ConfigError(f"{where}.throughput: {exc}") from None
            if e164 not in ids:
                raise ConfigError(f"{where}.throughput.{number}: not in phone_number_ids")
            per_number[ids[e164]] = _number(rate, f"{where}.throughput.{number}")
    else:
        default_tp = _number(raw_tp, f"{where}.throughput")
    burst = opts.get("burst")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ConfigError(f"{where}.burst: expected an integer >= 1, got {burst!r}")
    max_bytes = opts.get("media_max_bytes", media.DEFAULT_DOWNLOAD_MAX)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ConfigError(f"{where}.media_max_bytes: expected an integer >= 1")
    return Options(
        graph_url=graph_url,
        access_token=text("access_token"),
        app_secret=text("app_secret"),
        verify_token=text("verify_token"),
        phone_number_ids=ids,
        throughput=per_number,
        default_throughput=default_tp,
        burst=burst,
        timeout=_number(opts.get("timeout", 15.0), f"{where}.timeout"),
        media_max_bytes=max_bytes,
        auth_probe_seconds=_number(
            opts.get("auth_probe_seconds", 60.0), f"{where}.auth_probe_seconds"
        ),
    )


class _Seen:
    """A bounded set of recently handled keys (Meta re-sends; most duplicates land here)."""

    def __init__(self, size: int = _SEEN_MAX) -> None:
        self.size = size
        self._keys: OrderedDict[object, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: object) -> None:
        """Remember ``key``, forgetting the oldest beyond ``size``."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def discard(self, key: object) -> None:
        """Forget ``key`` (its handling failed: Meta will send it again)."""
        self._keys.pop(key, None)


def _template(spec: object) -> dict[str, Any]:
    """Meta's ``template`` object from ``meta.whatsapp.template``; refuses bad shapes."""
    bad = ErrorCode.CONTENT_INVALID
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise PermanentError("meta.whatsapp.template needs a 'name' (string)", code=bad)
    lang = spec.get("language")
    if isinstance(lang, str):
        lang = {"code": lang}
    if not isinstance(lang, dict) or not isinstance(lang.get("code"), str) or not lang["code"]:
        raise PermanentError(
            "meta.whatsapp.template needs a 'language' (a code such as 'de', or {code})",
            code=bad,
        )
    out: dict[str, Any] = {"name": spec["name"], "language": dict(lang)}
    components = spec.get("components")
    if components is not None:
        if not isinstance(components, list):
            raise PermanentError("meta.whatsapp.template.components must be a list", code=bad)
        out["components"] = components
    return out


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return jsoncodec.loads_external(response.content)
    except ValueError:
        return None


class WhatsAppCloudConnector:
    """Meta's WhatsApp Cloud API behind the connector seam."""

    kind = KIND

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.id = config.id
        self.ctx = ctx
        self.options = parse_options(config)
        self.channels = frozenset({"whatsapp"})
        self.numbers: frozenset[str] | None = frozenset(self.options.phone_number_ids)
        self.numbers_by_id = {v: k for k, v in self.options.phone_number_ids.items()}
        # Shared by every process on the store: one budget per number, one backoff per
        # recipient (``throughput.py``).
        self.limiter = NumberLimiter(
            self.options.throughput,
            default_rate=self.options.default_throughput,
            burst=self.options.burst,
            shared=ctx.shared,
            prefix=f"wa:{self.id}:rate:",
        )
        self.pairs = PairBackoff(ctx.shared, prefix=f"wa:{self.id}:pair:")
        self._auth_error: ConnectorError | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._seen_inbound = _Seen()
        self._seen_status = _Seen()
        self._media_ids: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    # -- the seam ------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the token and every phone_number_id (``GET /{phone_number_id}``)."""
        for number, pnid in self.options.phone_number_ids.items():
            try:
                info = await self._graph(
                    "GET", f"/{pnid}", params={"fields": "display_phone_number,verified_name"}
                )
            except AuthError:
                raise
            except ConnectorError as exc:
                raise NotReadyError(f"{number} (phone_number_id {pnid}): {exc.message}") from exc
            shown = "".join(
                c for c in str(_dict(info).get("display_phone_number", "")) if c.isdigit()
            )
            if shown and shown != number.lstrip("+"):
                log.warning(
                    "connector %s: phone_number_id %s displays %s, configured for %s",
                    self.id,
                    pnid,
                    shown,
                    number,
                )

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send one message (text, one attachment, or a template) from a business number."""
        pnid = self.options.phone_number_ids.get(message.from_)
        if pnid is None:
            raise PermanentError(
                f"{message.from_} is not a business number of connector {self.id}",
                code=ErrorCode.REJECTED,
            )
        hits = await self._pair_clear(pnid, message.to)
        body = await self._message_body(pnid, message)
        if await self.limiter.acquire(pnid) > 0:
            # Another process may have met a 131056 for this recipient while this one
            # waited for a slot: look again rather than earn a longer backoff.
            hits = await self._pair_clear(pnid, message.to)
        answer = await self._graph("POST", f"/{pnid}/messages", json=body, recipient=message.to)
        if hits:
            await self.pairs.success(pnid, message.to)
        messages = _dict(answer).get("messages")
        first = messages[0] if isinstance(messages, list) and messages else None
        wamid = _dict(first).get("id")
        if not isinstance(wamid, str) or not wamid:
            # Meta said 2xx, so the message most likely went out: retrying could send it
            # twice, failing it would refund a message the user may get.
            log.warning("connector %s: send of %s accepted without a wamid", self.id, message.id)
            return SendResult(carrier_id=f"unknown:{message.id}", meta={"wamid_missing": True})
        contacts = _dict(answer).get("contacts")
        contact = _dict(contacts[0]) if isinstance(contacts, list) and contacts else {}
        meta = {"wa_id": contact["wa_id"]} if contact.get("wa_id") else {}
        return SendResult(carrier_id=wamid, segments=1, meta=meta)

    async def _pair_clear(self, pnid: str, recipient: str) -> int:
        """The pair's 131056 answers in a row; a retryable error while its backoff runs."""
        hits, wait = await self.pairs.state(pnid, recipient)
        if wait > 0:
            raise RetryableError(
                f"pair rate limit: no message to {recipient} for another {wait:.0f} s",
                retry_after=wait,
                code=ErrorCode.THROTTLED,
                carrier_code=str(errors.PAIR_RATE_LIMIT),
            )
        return hits

    def routes(self) -> Sequence[BaseRoute]:
        """``GET /`` (Meta's verification) and ``POST /`` (events), under ``/hooks/{id}``."""
        return [
            Route("/", self._verify, methods=["GET"]),
            Route("/", self._events, methods=["POST"]),
        ]

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """``whatsapp_media``: an inbound message's media download (see ``media_job``)."""
        return {MEDIA_JOB: self.media_job}

    def health(self) -> Health:
        """Unhealthy from an authentication error until the token works again."""
        err = self._auth_error
        if err is None:
            return Health(True)
        return Health(
            False,
            f"WhatsApp refused the access token ({err.carrier_code or 'no code'}): "
            f"{err.message}; "
            f"messages stay queued. Re-checked every {self.options.auth_probe_seconds:g} s",
        )

    async def aclose(self) -> None:
        """Stop the token probe and in-process media downloads."""
        tasks = [t for t in (self._probe_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- Graph API -----------------------------------------------------------------------
    async def _graph(
        self, method: str, path: str, *, recipient: str | None = None, **kwargs: Any
    ) -> Any:
        """One Graph API call; a refusal becomes the table's connector error."""
        headers = {"Authorization": f"Bearer {self.options.access_token}"}
        try:
            response = await self.ctx.http.request(
                method,
                self.options.graph_url + path,
                headers=headers,
                timeout=self.options.timeout,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            raise media.transport_failure(exc) from exc
        if response.status_code >= 300:
            raise await self._failed(
                parse_graph_error(response.status_code, _json_or_none(response)), path, recipient
            )
        self._auth_ok()
        return _json_or_none(response)

    async def _failed(
        self, err: GraphError, path: str, recipient: str | None
    ) -> ConnectorError:
        """Apply what an error means beyond the message (health, pauses) and raise it."""
        rule = err.rule
        pnid = path.strip("/").split("/", 1)[0]
        retry_after = None
        if rule.backoff == errors.NUMBER_PAUSE and rule.retry_after:
            await self.limiter.pause(pnid, rule.retry_after)
        elif rule.backoff == errors.PAIR_BACKOFF and recipient is not None:
            retry_after = await self.pairs.hit(pnid, recipient)
        exc = exception_for(err, retry_after)
        if isinstance(exc, AuthError):
            self._auth_failed(exc)
        log.warning("connector %s: %s %s refused: %s", self.id, pnid, path, err.describe())
        return exc

    def _auth_failed(self, exc: ConnectorError) -> None:
        if self._auth_error is None:
            log.error("connector %s unhealthy: %s", self.id, exc.message)
        self._auth_error = exc
        if self._probe_task is None or self._probe_task.done():
            self._probe_task = asyncio.create_task(self._probe_loop(), name=f"probe-{self.id}")

    def _auth_ok(self) -> None:
        if self._auth_error is not None:
            log.info("connector %s healthy again: the access token works", self.id)
            self._auth_error = None

    async def probe(self) -> bool:
        """Re-check the token once; True (and healthy) when Meta accepts it."""
        pnid = next(iter(self.options.phone_number_ids.values()))
        try:
            await self._graph("GET", f"/{pnid}", params={"fields": "id"})
        except ConnectorError as exc:
            log.info("connector %s: token check failed: %s", self.id, exc.message)
            return False
        return True

    async def _probe_loop(self) -> None:
        while self._auth_error is not None:
            await asyncio.sleep(self.options.auth_probe_seconds)
            await self.probe()

    # -- sending -------------------------------------------------------------------------
    async def _message_body(self, pnid: str, message: OutboundMessage) -> dict[str, Any]:
        raw = message.meta.get("whatsapp")
        wa: dict[str, Any] = raw if isinstance(raw, dict) else {}
        bad = ErrorCode.CONTENT_INVALID
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to,
        }
        context = wa.get("context")
        if context is not None:
            if not isinstance(context, str) or not context:
                raise PermanentError("meta.whatsapp.context must be a wamid string", code=bad)
            body["context"] = {"message_id": context}
        if wa.get("template") is not None:
            body["type"] = "template"
            body["template"] = _template(wa["template"])
            return body
        if message.attachments:
            if len(message.attachments) > 1:
                raise PermanentError("WhatsApp carries one attachment per message", code=bad)
            att = message.attachments[0]
            data = await asyncio.to_thread(Path(att.path).read_bytes)
            kind = media.check_outbound(att, data)
            caption = message.text or None
            if caption and kind not in media.CAPTIONED:
                raise PermanentError(
                    f"a WhatsApp {kind} carries no text; send the text as its own message",
                    code=bad,
                )
            if caption and len(caption) > media.MAX_CAPTION:
                raise PermanentError(
                    f"a WhatsApp caption has at most {media.MAX_CAPTION} characters "
                    f"(got {len(caption)})",
                    code=bad,
                )
            obj: dict[str, Any] = {"id": await self._media_id(pnid, att, data)}
            if caption:
                obj["caption"] = caption
            if kind == "document":
                obj["filename"] = att.filename or f"{att.id}.{_extension(att.content_type)}"
            body["type"] = kind
            body[kind] = obj
            return body
        text = message.text or ""
        if not text:
            raise PermanentError(
                "a WhatsApp message needs text, an attachment or a template", code=bad
            )
        if len(text) > MAX_TEXT:
            raise PermanentError(
                f"WhatsApp text has at most {MAX_TEXT} characters (got {len(text)})", code=bad
            )
        body["type"] = "text"
        body["text"] = {"body": text, "preview_url": bool(wa.get("preview_url", False))}
        return body

    async def _media_id(self, pnid: str, att: OutboundAttachment, data: bytes) -> str:
        """Meta's id for these bytes: uploaded once, reused while Meta keeps it."""
        key = (pnid, att.sha256)
        cached = self._media_ids.get(key)
        if cached is not None and time.monotonic() - cached[1] < MEDIA_ID_TTL:
            return cached[0]
        try:
            media_id = await media.upload(
                self.ctx.http,
                self.options.graph_url,
                self.options.access_token,
                pnid,
                data,
                att.content_type,
                att.filename,
            )
        except AuthError as exc:
            self._auth_failed(exc)
            raise
        self._auth_ok()
        self._media_ids[key] = (media_id, time.monotonic())
        while len(self._media_ids) > _MEDIA_CACHE_MAX:
            self._media_ids.popitem(last=False)
        return media_id

    # -- webhooks ------------------------------------------------------------------------
    async def _verify(self, request: Request) -> Response:
        """Meta's subscription check: echo ``hub.challenge`` when the token matches."""
        q = request.query_params
        token = q.get("hub.verify_token", "")
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode(), self.options.verify_token.encode()
        ):
            return PlainTextResponse(q.get("hub.challenge", ""))
        log.warning("connector %s: webhook verification refused (mode or token wrong)", self.id)
        return PlainTextResponse("verification failed", status_code=403)

    async def _events(self, request: Request) -> Response:
        """Meta's event POST: verify, parse, hand over; media follows in the background."""
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_WEBHOOK_BYTES:
            return PlainTextResponse("payload too large", status_code=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_WEBHOOK_BYTES:
                return PlainTextResponse("payload too large", status_code=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        signature = request.headers.get(webhook.SIGNATURE_HEADER)
        if not webhook.verify_signature(self.options.app_secret, body, signature):
            log.warning(
                "connector %s: webhook with %s signature refused (%d bytes)",
                self.id,
                "a wrong" if signature else "no",
                len(body),
            )
            return PlainTextResponse("invalid signature", status_code=401)
        try:
            doc = jsoncodec.loads_external(body)
        except ValueError as exc:
            # Signed by Meta yet unreadable (or nested too deep to store): say so (Meta
            # retries) and keep a trace.
            log.error("connector %s: signed webhook is not JSON (%s): %r", self.id, exc, body[:200])
            return PlainTextResponse("malformed JSON", status_code=400)
        parsed = webhook.parse(
            doc, connector_id=self.id, numbers_by_id=self.numbers_by_id, now=self.ctx.clock.now()
        )
        for reason in parsed.skipped:
            log.info("connector %s: webhook item skipped: %s", self.id, reason)
        for error in parsed.errors:
            log.warning("connector %s: WhatsApp reports an error: %s", self.id, error)
        await self.handle(parsed)
        return JSONResponse({"ok": True})

    async def handle(self, parsed: webhook.Parsed) -> None:
        """Hand parsed messages and statuses to the gateway (media downloads deferred).

        Keys are marked seen before the hand-over, so that a duplicate arriving while the
        first is still being stored is skipped; a failed hand-over forgets its key again.
        """
        for item in parsed.inbound:
            key = item.message.carrier_id
            if key in self._seen_inbound:
                continue
            self._seen_inbound.add(key)
            try:
                if item.media is None:
                    await self.ctx.sink.inbound(item.message)
                else:
                    await self._defer_media(item)
            except BaseException:
                self._seen_inbound.discard(key)
                raise
        for report in parsed.statuses:
            skey = (report.carrier_id, report.status)
            if skey in self._seen_status:
                continue
            self._seen_status.add(skey)
            try:
                await self.ctx.sink.status(report)
            except BaseException:
                self._seen_status.discard(skey)
                raise

    async def _defer_media(self, item: ParsedInbound) -> None:
        defer = getattr(self.ctx.sink, "defer", None)
        if callable(defer):
            await defer(MEDIA_JOB, media_payload(item))
            return
        # A sink without durable jobs (tests, embedding): download in this process.
        task = asyncio.create_task(self._receive_until_done(item), name=f"media-{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive_until_done(self, item: ParsedInbound) -> None:
        tries = 0

        async def attempt() -> None:
            nonlocal tries
            tries += 1
            if not await self.receive_media(item, last_try=tries == MEDIA_ATTEMPTS):
                raise _MediaPending(item.message.carrier_id)

        retrying = in_process(
            attempts=MEDIA_ATTEMPTS,
            base=MEDIA_RETRY_BASE.total_seconds(),
            cap=MEDIA_RETRY_MAX.total_seconds(),
            retry_on=lambda exc: isinstance(exc, _MediaPending),
        )
        await retrying(attempt)  # the last try stores the message, with or without media

    async def media_job(self, job: Job) -> None:
        """The ``whatsapp_media`` job: download an inbound message's media, then store the
        message (with it, if it came); the download is tried again later when it fails."""
        item = media_item(job.payload)
        if item.message.connector_id != self.id:
            # Received by a WhatsApp connector that is no longer configured (this one has
            # the kind): its token is gone, so the message is stored without the media.
            assert item.media is not None
            reason = "the connector is no longer configured"
            _without_media(item.message, item.media, reason, refused=False)
            await self.ctx.sink.inbound(item.message)
            return
        last = job.attempts >= min(MEDIA_ATTEMPTS, job.max_attempts)
        if not await self.receive_media(item, last_try=last):
            delay = backoff(
                job.attempts,
                base=MEDIA_RETRY_BASE.total_seconds(),
                cap=MEDIA_RETRY_MAX.total_seconds(),
            )
            raise Retry(
                self.ctx.clock.now() + timedelta(seconds=delay), "media download failed; retrying"
            )

    async def receive_media(self, item: ParsedInbound, *, last_try: bool) -> bool:
        """Download an inbound message's media and store the message; False: try later.

        Corrupt or oversized media is refused (logged, never stored): the message is then
        stored without it, ``meta.whatsapp.media_error`` saying why. So is media that
        still cannot be fetched on the ``last_try``.
        """
        msg, ref = item.message, item.media
        if ref is None:
            await self.ctx.sink.inbound(msg)
            return True
        try:
            got = await media.download(
                self.ctx.http,
                self.options.graph_url,
                self.options.access_token,
                ref.id,
                webhook_sha256=ref.sha256,
                max_bytes=self.options.media_max_bytes,
            )
        except media.MediaRefused as exc:
            log.error("connector %s: media of %s refused: %s", self.id, msg.carrier_id, exc)
            _without_media(msg, ref, exc.message, refused=True)
        except Exception as exc:
            if isinstance(exc, AuthError):
                self._auth_failed(exc)
            retryable = not isinstance(exc, ConnectorError) or exc.retryable
            reason = exc.message if isinstance(exc, ConnectorError) else repr(exc)
            if retryable and not last_try:
                log.warning(
                    "connector %s: media of %s not fetched yet: %s", self.id, msg.carrier_id, reason
                )
                return False
            log.error("connector %s: media of %s given up: %s", self.id, msg.carrier_id, reason)
            _without_media(msg, ref, reason, refused=False)
        else:
            self._auth_ok()
            ctype = got.content_type if got.content_type != "application/octet-stream" else ""
            msg.attachments = [
                InboundAttachment(ctype or ref.mime_type, data=got.data, filename=ref.filename)
            ]
        await self.ctx.sink.inbound(msg)
        return True


class _MediaPending(Exception):
    """An in-process media download that must be tried again."""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _extension(content_type: str) -> str:
    ctype = media.base_type(content_type)
    return {"application/pdf": "pdf", "text/plain": "txt"}.get(ctype, "bin")


def _without_media(msg: InboundMessage, ref: MediaRef, reason: str, *, refused: bool) -> None:
    """Store ``msg`` without its media, saying why in its meta (and its text if empty)."""
    msg.attachments = []
    wa = msg.meta.setdefault("whatsapp", {})
    wa["media_error"] = {"reason": reason, "refused": refused, "media_id": ref.id}
    if not msg.text:
        msg.text = f"[{ref.kind} not available: {reason}]"


# -- the durable media job ----------------------------------------------------------------
def media_payload(item: ParsedInbound) -> dict[str, Any]:
    """The ``whatsapp_media`` job's payload: the message to store and its media."""
    msg = item.message
    assert item.media is not None
    return {
        "connector_id": msg.connector_id,
        "carrier_id": msg.carrier_id,
        "from": msg.from_,
        "to": msg.to,
        "text": msg.text,
        "received_at": msg.received_at.isoformat(),
        "meta": msg.meta,
        "media": item.media.to_dict(),
    }


def media_item(payload: Mapping[str, Any]) -> ParsedInbound:
    """The message and media a ``whatsapp_media`` job carries."""
    ref = MediaRef.from_dict(payload["media"])
    msg = InboundMessage(
        connector_id=str(payload["connector_id"]),
        channel="whatsapp",
        carrier_id=str(payload["carrier_id"]),
        from_=str(payload["from"]),
        to=str(payload["to"]),
        text=payload.get("text"),
        received_at=datetime.fromisoformat(str(payload["received_at"])),
        attachments=[InboundAttachment(ref.mime_type, filename=ref.filename, reference=ref.id)],
        meta=dict(payload.get("meta") or {}),
    )
    return ParsedInbound(msg, ref)


register(KIND, WhatsAppCloudConnector)
