"""A local WhatsApp Cloud API: Meta's Graph API and webhook sender, for tests and the demo.

In-process (tests, ``gateway demo``)::

    sim = WhatsAppSimulator(
        numbers={"+4915112345671": "106540352242922"},   # business number → phone_number_id
        webhook_url="http://127.0.0.1:8080/hooks/whatsapp/",
        clock=clock,                                      # 24-hour window, 5-minute URLs
        auto_status=False,                                # statuses wait for flush()
    )
    async with sim:                                       # serves on a free loopback port
        options = sim.connector_options()                 # graph_url, tokens, phone_number_ids
        wamid = await sim.inject_inbound("+4917612345678", "+4915112345671", text="Hallo")
        await sim.inject_inbound(user, business, media=jpeg, mime_type="image/jpeg")
        sim.fail_next(131026)            # the next send is refused (synchronous error)
        sim.fail_async(131049)           # the next send is accepted, then a failed webhook
        sim.fail_until(clock.now() + timedelta(seconds=60))  # every send: 500 for a minute
        sim.status_modes = {"duplicates", "out_of_order", "skip_delivered"}
        sim.batch_size = 10              # statuses per webhook POST
        await sim.flush()                # POST the pending status webhooks now
        sim.sends, sim.deliveries        # what it accepted/refused (and when), what it posted

``sim.app`` is the bare ASGI app (e.g. for ``httpx.ASGITransport``).

As a process::

    python -m connectors.whatsapp.simulator --port 8095 \\
        --webhook-url http://127.0.0.1:8080/hooks/whatsapp/ \\
        --number +4915112345671=106540352242922 [--access-token T] [--app-secret S]

prints one JSON line (``graph_url``, ``access_token``, ``app_secret``, ``numbers``) and
serves until SIGINT/SIGTERM. Control routes (no token; bind it to loopback):
``POST /_sim/inbound`` (JSON ``from``, ``to``, ``text``, or ``media_base64`` +
``mime_type`` [+ ``filename``, ``caption``], ``reply_to``, ``profile_name``),
``POST /_sim/fail`` (``code``, ``count``, ``mode`` ``sync``/``async``),
``POST /_sim/modes`` (``status_modes``, ``batch_size``, ``window_errors``),
``POST /_sim/flush``, ``GET /_sim/sends``.

What it does like Meta:

- every Graph call needs ``Authorization: Bearer <access_token>`` (else ``401`` with
  Graph's error shape, code 190); ``GET /{version}/{phone_number_id}`` describes a number;
- ``POST /{version}/{phone_number_id}/messages`` checks the request (text ≤ 4096, caption ≤
  1024, media ids, template name and language) and answers ``contacts`` + ``messages``
  with a ``wamid.`` id;
- ``POST /{version}/{phone_number_id}/media`` (multipart, type and size limits checked) →
  ``{"id"}``; ``GET /{version}/{media_id}`` → a download URL valid five minutes (the
  simulator's clock) with ``sha256`` (hex) and ``file_size``; the URL needs the Bearer
  token and answers ``404`` once expired;
- the 24-hour customer service window per (business number, user), opened by every
  injected inbound message: a free-form message outside it fails with 131047 — as a
  ``failed`` status webhook, as Meta does (``window_errors="sync"``: refused at once);
  templates always go;
- status webhooks ``sent`` → ``delivered`` → ``read`` (``stop_at``), signed with
  ``X-Hub-Signature-256`` over ASCII-escaped JSON; modes ``duplicates`` (every POST
  twice), ``out_of_order`` (``read`` before ``delivered``), ``skip_delivered``;
  ``batch_size`` statuses per POST; a non-200 answer is posted again at the next flush
  (at most ``MAX_REDELIVERIES`` times), as Meta retries;
- programmed errors: ``fail_next(code)`` refuses the next send(s) synchronously (e.g.
  131047, 131026, 130429, 131056, 190), ``fail_async(code)`` accepts then reports
  ``failed`` with ``errors[]``, ``fail_until(at)`` refuses every send until then (an
  outage, on the simulator's clock).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.whatsapp import media as limits
from connectors.whatsapp.webhook import sign
from gateway.clock import Clock, SystemClock
from gateway.serving import serving

VERSION = "v25.0"
URL_LIFETIME = timedelta(minutes=5)
WINDOW = timedelta(hours=24)
MAX_REDELIVERIES = 5
STATUS_MODES = frozenset({"duplicates", "out_of_order", "skip_delivered"})
_E164 = re.compile(r"\+?([1-9]\d{6,14})")
# Titles and details as Meta words them (support/error-codes).
ERRORS: dict[int, tuple[str, str]] = {
    0: ("AuthException", "We were unable to authenticate the app user."),
    4: ("Too many calls", "The app has reached its API call rate limit."),
    10: ("Permission Denied", "Permission is either not granted or has been removed."),
    100: (
        "Invalid parameter",
        "The request included one or more unsupported or misspelled parameters.",
    ),
    190: (
        "Invalid OAuth access token - Cannot parse access token",
        "Your access token has expired.",
    ),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
    131009: ("Parameter value is not valid", "One or more parameter values are invalid."),
    131026: ("Message Undeliverable", "Unable to deliver message."),
    131047: (
        "Re-engagement message",
        "Message failed to send because more than 24 hours "
        "have passed since the customer last replied to this number.",
    ),
    131049: (
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131053: ("Media upload error", "Unable to upload the media used in the message."),
    131056: (
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient "
        "phone number in a short period of time.",
    ),
    132001: (
        "Template does not exist",
        "The template does not exist in the specified "
        "language or the template has not been approved.",
    ),
}
_HTTP_STATUS = {
    0: 401,
    190: 401,
    10: 403,
    4: 429,
    80007: 429,
    130429: 429,
    131056: 429,
    1: 500,
    2: 503,
    131000: 500,
    131016: 503,
}


def graph_error(code: int, details: str | None = None) -> dict[str, Any]:
    """A Graph API error body for ``code``."""
    title, default = ERRORS.get(code, ("Error", "Simulated error."))
    return {
        "error": {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details or default},
            "fbtrace_id": secrets.token_urlsafe(12),
        }
    }


def status_error(code: int) -> dict[str, Any]:
    """One entry of a ``failed`` status webhook's ``errors`` array."""
    title, details = ERRORS.get(code, ("Error", "Simulated error."))
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details},
        "href": "/documentation/business-messaging/whatsapp/support/error-codes",
    }


def _error(code: int, details: str | None = None) -> JSONResponse:
    return JSONResponse(graph_error(code, details), status_code=_HTTP_STATUS.get(code, 400))


def new_wamid() -> str:
    """A message id shaped like Meta's (``wamid.`` + base64)."""
    return (
        "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(18)).decode()
    )


def _digits(number: str) -> str | None:
    m = _E164.fullmatch(re.sub(r"[\s\-()]", "", number))
    return m.group(1) if m else None


@dataclass(slots=True)
class SentMessage:
    """A send the simulator received: accepted (``wamid``) or refused (``error``)."""

    phone_number_id: str
    to: str  # the user's wa_id (digits)
    type: str
    payload: dict[str, Any]
    at: datetime
    wamid: str | None = None
    error: int | None = None
    # When the request arrived (time.monotonic(), real time whatever ``clock`` says):
    # what rate limits are checked against.
    received: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class Delivery:
    """One webhook POST the simulator made and how the receiver answered."""

    kind: str  # "status" | "inbound" | "raw"
    body: bytes
    status_code: int | None
    error: str | None = None

    @property
    def doc(self) -> Any:
        """The posted JSON."""
        return json.loads(self.body)


@dataclass(slots=True)
class _Media:
    id: str
    data: bytes
    mime_type: str
    phone_number_id: str
    at: datetime

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(slots=True)
class _Pending:
    phone_number_id: str
    status: dict[str, Any]
    attempts: int = 0


@dataclass(slots=True)
class _Fault:
    code: int
    remaining: int
    details: str | None = None


@dataclass(slots=True)
class _Serving:
    server: contextlib.AbstractAsyncContextManager[str]
    base_url: str
    own_http: bool = field(default=False)


class WhatsAppSimulator:
    """Meta's WhatsApp Cloud API, locally; see the module docstring."""

    def __init__(
        self,
        *,
        numbers: Mapping[str, str] | None = None,
        webhook_url: str | None = None,
        access_token: str | None = None,
        app_secret: str | None = None,
        verify_token: str | None = None,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        auto_status: bool = True,
        status_delay: float = 0.0,
        stop_at: str = "read",
        batch_size: int = 1,
        window_errors: str = "async",
    ) -> None:
        self.numbers = dict(numbers or {"+4915112345671": "106540352242922"})
        self.number_of = {pnid: number for number, pnid in self.numbers.items()}
        self.webhook_url = webhook_url
        self.access_token = access_token or "sim-token-" + secrets.token_hex(8)
        self.app_secret = app_secret or "sim-secret-" + secrets.token_hex(8)
        self.verify_token = verify_token or "sim-verify-" + secrets.token_hex(8)
        self.clock: Clock = clock or SystemClock()
        self.http = http
        self.auto_status = auto_status
        self.status_delay = status_delay
        if stop_at not in ("sent", "delivered", "read"):
            raise ValueError(f"stop_at must be sent, delivered or read, not {stop_at!r}")
        self.stop_at = stop_at
        self.batch_size = batch_size
        if window_errors not in ("async", "sync"):
            raise ValueError(f"window_errors must be async or sync, not {window_errors!r}")
        self.window_errors = window_errors
        self.status_modes: set[str] = set()
        self.templates: set[str] | None = None  # None: any template name is approved
        self.sends: list[SentMessage] = []
        self.deliveries: list[Delivery] = []
        self.last_inbound: dict[tuple[str, str], datetime] = {}
        self.media: dict[str, _Media] = {}
        self.corrupt_media: set[str] = set()  # media ids whose download is altered
        self.truncate_media: set[str] = set()  # media ids whose download lacks a byte
        self.expire_next_urls = 0  # so many coming download URLs are born expired
        self.hash_in_media_info = True  # False: GET /{media_id} omits "sha256"
        self.url_requests = 0  # download URLs handed out
        self._urls: dict[str, tuple[str, datetime]] = {}
        self._faults: list[_Fault] = []
        self._raw_faults: list[tuple[int, bytes]] = []
        self._async_faults: list[_Fault] = []
        self._outage: tuple[datetime, int] | None = None  # fail_until
        self._pending: list[_Pending] = []
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving: _Serving | None = None
        self.app = self._build_app()

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Where it is served (after ``start``)."""
        if self._serving is None:
            raise RuntimeError("the simulator is not serving: use `async with` or start()")
        return self._serving.base_url

    @property
    def graph_url(self) -> str:
        """The ``graph_url`` option for a ``whatsapp_cloud`` connector."""
        return f"{self.base_url}/{VERSION}"

    def connector_options(self) -> dict[str, Any]:
        """The options of a ``whatsapp_cloud`` connector talking to this simulator."""
        return {
            "graph_url": self.graph_url,
            "access_token": self.access_token,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
            "phone_number_ids": dict(self.numbers),
        }

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: a free port) in this event loop; returns the base URL."""
        server = serving(self.app, host, port)
        try:
            base_url = await server.__aenter__()
        except RuntimeError as exc:
            raise RuntimeError(f"the WhatsApp simulator could not start on {host}:{port}") from exc
        own = self.http is None
        if own:
            self.http = httpx.AsyncClient(timeout=10.0)
        self._serving = _Serving(server, base_url, own)
        return base_url

    async def stop(self) -> None:
        """Stop serving and cancel pending automatic flushes."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        served, self._serving = self._serving, None
        if served is None:
            return
        await served.server.__aexit__(None, None, None)
        if served.own_http and self.http is not None:
            await self.http.aclose()
            self.http = None

    async def __aenter__(self) -> WhatsAppSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- programming it ------------------------------------------------------------------
    def fail_next(self, code: int, count: int = 1, details: str | None = None) -> None:
        """Refuse the next ``count`` sends with Graph error ``code`` (synchronously)."""
        self._faults.append(_Fault(code, count, details))

    def fail_next_http(self, status: int, body: bytes = b"<html>Bad Gateway</html>") -> None:
        """Answer the next send with a bare HTTP error and no Graph error (a proxy's)."""
        self._raw_faults.append((status, body))

    def fail_until(self, until: datetime, code: int = 131000) -> None:
        """An outage: refuse every send with Graph error ``code`` (131000 answers HTTP 500)
        until the simulator's clock reaches ``until``."""
        self._outage = (until, code)

    def fail_async(self, code: int, count: int = 1) -> None:
        """Accept the next ``count`` sends, then report them ``failed`` with ``code``."""
        self._async_faults.append(_Fault(code, count))

    def window_open(self, business: str, user: str) -> bool:
        """Whether ``user`` wrote to ``business`` within the last 24 hours."""
        pnid, wa = self.numbers.get(business), _digits(user)
        last = self.last_inbound.get((pnid or "", wa or ""))
        return last is not None and self.clock.now() - last < WINDOW

    @property
    def pending(self) -> int:
        """Status updates waiting to be posted."""
        return len(self._pending)

    # -- webhooks out --------------------------------------------------------------------
    async def post_webhook(self, doc: Any, kind: str = "raw") -> Delivery:
        """POST ``doc`` to the webhook URL as Meta does: ASCII-escaped JSON, signed."""
        body = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        return await self.post_body(body, kind)

    async def post_body(self, body: bytes, kind: str = "raw") -> Delivery:
        """POST raw bytes, signed with the app secret."""
        if self.webhook_url is None:
            raise RuntimeError("the simulator has no webhook_url to post to")
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=10.0)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(self.app_secret, body),
        }
        try:
            response = await self.http.post(self.webhook_url, content=body, headers=headers)
            delivery = Delivery(kind, body, response.status_code)
        except httpx.HTTPError as exc:
            delivery = Delivery(kind, body, None, f"{type(exc).__name__}: {exc}")
        self.deliveries.append(delivery)
        return delivery

    def _envelope(self, pnid: str, value: dict[str, Any]) -> dict[str, Any]:
        number = self.number_of[pnid]
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": number.lstrip("+"),
                                    "phone_number_id": pnid,
                                },
                                **value,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }

    async def inject_inbound(
        self,
        from_: str,
        to: str,
        text: str | None = None,
        *,
        media: bytes | None = None,
        mime_type: str | None = None,
        filename: str | None = None,
        reply_to: str | None = None,
        profile_name: str = "Simulated User",
        wamid: str | None = None,
        at: datetime | None = None,
        times: int = 1,
    ) -> str:
        """Post a signed inbound message (text, or media with ``text`` as caption); opens
        the user's 24-hour window. ``times`` > 1 re-sends it (Meta's duplicates)."""
        pnid = self.numbers.get(to)
        wa = _digits(from_)
        if pnid is None or wa is None:
            raise ValueError(f"unknown business number {to!r} or bad user number {from_!r}")
        now = at or self.clock.now()
        wamid = wamid or new_wamid()
        msg: dict[str, Any] = {"from": wa, "id": wamid, "timestamp": str(int(now.timestamp()))}
        if media is not None:
            ctype = mime_type or "application/octet-stream"
            kind = limits.kind_of(ctype) or "document"
            stored = self._store_media(media, ctype, pnid)
            obj: dict[str, Any] = {
                "mime_type": ctype,
                "sha256": base64.b64encode(hashlib.sha256(media).digest()).decode(),
                "id": stored.id,
            }
            if text and kind in limits.CAPTIONED:
                obj["caption"] = text
            if kind == "document":
                obj["filename"] = filename or "document"
            msg.update({"type": kind, kind: obj})
        else:
            msg.update({"type": "text", "text": {"body": text or ""}})
        if reply_to:
            msg["context"] = {"from": self.number_of[pnid].lstrip("+"), "id": reply_to}
        self.last_inbound[(pnid, wa)] = max(now, self.last_inbound.get((pnid, wa), now))
        doc = self._envelope(
            pnid,
            {"contacts": [{"profile": {"name": profile_name}, "wa_id": wa}], "messages": [msg]},
        )
        for _ in range(times):
            await self.post_webhook(doc, "inbound")
        return wamid

    def _queue(self, pnid: str, wamid: str, wa: str, status: str, code: int | None) -> None:
        obj: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(self.clock.now().timestamp())),
            "recipient_id": wa,
        }
        if status in ("sent", "delivered"):
            obj["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": "service",
            }
        if code is not None:
            obj["errors"] = [status_error(code)]
        self._pending.append(_Pending(pnid, obj))

    def _queue_progress(self, pnid: str, wamid: str, wa: str) -> None:
        steps = ["sent", "delivered", "read"]
        steps = steps[: steps.index(self.stop_at) + 1]
        if "skip_delivered" in self.status_modes and "read" in steps:
            steps.remove("delivered")
        if "out_of_order" in self.status_modes and steps[-1] == "read" and len(steps) == 3:
            steps = ["sent", "read", "delivered"]
        for status in steps:
            self._queue(pnid, wamid, wa, status, None)

    async def flush(self) -> list[Delivery]:
        """POST every pending status update now (``batch_size`` per POST)."""
        async with self._flush_lock:
            pending, self._pending = self._pending, []
            out: list[Delivery] = []
            i = 0
            while i < len(pending):
                pnid = pending[i].phone_number_id
                batch = [pending[i]]
                i += 1
                while (
                    i < len(pending)
                    and len(batch) < max(1, self.batch_size)
                    and pending[i].phone_number_id == pnid
                ):
                    batch.append(pending[i])
                    i += 1
                doc = self._envelope(pnid, {"statuses": [p.status for p in batch]})
                delivery = await self.post_webhook(doc, "status")
                out.append(delivery)
                if "duplicates" in self.status_modes:
                    out.append(await self.post_webhook(doc, "status"))
                if delivery.status_code != 200:
                    for p in batch:
                        p.attempts += 1
                        if p.attempts <= MAX_REDELIVERIES:
                            self._pending.append(p)
            return out

    def _schedule_flush(self) -> None:
        if not self.auto_status or self.webhook_url is None:
            return

        async def later() -> None:
            if self.status_delay > 0:
                await asyncio.sleep(self.status_delay)
            await self.flush()

        task = asyncio.create_task(later(), name="whatsapp-sim-flush")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the Graph API -------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), self.access_token.encode()
        )

    def _store_media(self, data: bytes, mime_type: str, pnid: str) -> _Media:
        media_id = str(10**15 + secrets.randbelow(9 * 10**15))
        item = _Media(media_id, data, mime_type, pnid, self.clock.now())
        self.media[media_id] = item
        return item

    async def _get_object(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(190)
        oid = request.path_params["oid"]
        if oid in self.number_of:
            return JSONResponse(
                {
                    "verified_name": "Simulated Business",
                    "display_phone_number": self.number_of[oid].lstrip("+"),
                    "id": oid,
                    "quality_rating": "GREEN",
                }
            )
        item = self.media.get(oid)
        if item is None:
            return _error(100, f"Unsupported get request. Object with ID '{oid}' does not exist")
        token = secrets.token_urlsafe(16)
        expires = self.clock.now() + URL_LIFETIME
        if self.expire_next_urls > 0:
            self.expire_next_urls -= 1
            expires = self.clock.now() - timedelta(seconds=1)
        self._urls[token] = (oid, expires)
        self.url_requests += 1
        base = str(request.base_url).rstrip("/")
        info = {
            "messaging_product": "whatsapp",
            "url": f"{base}/_media/{token}?mid={oid}",
            "mime_type": item.mime_type,
            "sha256": item.sha256_hex,
            "file_size": len(item.data),
            "id": oid,
        }
        if not self.hash_in_media_info:
            del info["sha256"]
        return JSONResponse(info)

    async def _download(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(190)
        entry = self._urls.get(request.path_params["token"])
        if entry is None or self.clock.now() >= entry[1]:
            return Response(b"Not Found", status_code=404)
        item = self.media[entry[0]]
        data = item.data
        if item.id in self.corrupt_media:
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"x"
        if item.id in self.truncate_media:
            data = data[:-1]
        return Response(data, media_type=item.mime_type)

    async def _upload(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(190)
        pnid = request.path_params["pnid"]
        if pnid not in self.number_of:
            return _error(100, f"Object with ID '{pnid}' does not exist")
        async with request.form() as form:
            upload = form.get("file")
            if form.get("messaging_product") != "whatsapp" or not isinstance(upload, UploadFile):
                return _error(100, "messaging_product=whatsapp and a file are required")
            data = await upload.read()
            ctype = str(form.get("type") or upload.content_type or "")
        kind = limits.kind_of(ctype)
        if kind is None:
            return _error(131053, f"Unsupported media type {ctype}")
        limit = limits.MAX_BYTES[kind]
        if kind == "sticker" and limits.is_animated_webp(data[:32]):
            limit = limits.ANIMATED_STICKER_BYTES
        if len(data) > limit:
            return _error(131053, f"{kind} of {len(data)} bytes is over {limit} bytes")
        return JSONResponse({"id": self._store_media(data, limits.base_type(ctype), pnid).id})

    def _check_message(self, pnid: str, body: dict[str, Any]) -> tuple[str, int | None, str]:
        """(type, error code or None, details) of a send request."""
        kind = str(body.get("type") or "text")
        obj = body.get(kind)
        if body.get("messaging_product") != "whatsapp":
            return kind, 100, "messaging_product must be whatsapp"
        if kind == "text":
            text = obj.get("body") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text:
                return kind, 100, "text.body is required"
            if len(text) > 4096:
                return kind, 100, "text.body is longer than 4096 characters"
        elif kind in limits.MAX_BYTES:
            if not isinstance(obj, dict) or not (obj.get("id") or obj.get("link")):
                return kind, 100, f"{kind}.id or {kind}.link is required"
            if obj.get("id") and str(obj["id"]) not in self.media:
                return kind, 131009, f"media id {obj['id']} does not exist"
            caption = obj.get("caption")
            if caption is not None and (kind not in limits.CAPTIONED or len(str(caption)) > 1024):
                return kind, 100, "caption not allowed or longer than 1024 characters"
        elif kind == "template":
            lang = obj.get("language") if isinstance(obj, dict) else None
            if (
                not isinstance(obj, dict)
                or not obj.get("name")
                or not isinstance(lang, dict)
                or not lang.get("code")
            ):
                return kind, 100, "template.name and template.language.code are required"
            if self.templates is not None and obj["name"] not in self.templates:
                return kind, 132001, f"template {obj['name']!r} does not exist"
        elif kind not in ("reaction", "interactive", "location", "contacts"):
            return kind, 100, f"unsupported message type {kind!r}"
        return kind, None, ""

    async def _messages(self, request: Request) -> Response:
        received = time.monotonic()
        if not self._authorized(request):
            return _error(190)
        pnid = request.path_params["pnid"]
        if pnid not in self.number_of:
            return _error(100, f"Object with ID '{pnid}' does not exist")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(100, "the request body is not JSON")
        if not isinstance(body, dict):
            return _error(100, "the request body is not a JSON object")
        if self._raw_faults:
            status, raw = self._raw_faults.pop(0)
            return Response(raw, status_code=status, media_type="text/html")
        now = self.clock.now()
        raw_to = str(body.get("to") or "")
        wa = _digits(raw_to) or ""
        kind, code, details = self._check_message(pnid, body)
        if code is None and not wa:
            code, details = 100, f"'to' is not a phone number: {raw_to!r}"
        if code is None and self._outage is not None and now < self._outage[0]:
            code, details = self._outage[1], ""
        if code is None and self._faults:
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._faults.pop(0)
            code, details = fault.code, fault.details or ""
        window_closed = kind != "template" and not self.window_open(self.number_of[pnid], wa)
        if code is None and window_closed and self.window_errors == "sync":
            code, details = 131047, ""
        if code is not None:
            self.sends.append(SentMessage(pnid, wa, kind, body, now, None, code, received=received))
            return _error(code, details or None)
        wamid = new_wamid()
        self.sends.append(SentMessage(pnid, wa, kind, body, now, wamid, received=received))
        if window_closed:
            self._queue(pnid, wamid, wa, "failed", 131047)
        elif self._async_faults:
            fault = self._async_faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._async_faults.pop(0)
            self._queue(pnid, wamid, wa, "failed", fault.code)
        else:
            self._queue_progress(pnid, wamid, wa)
        self._schedule_flush()
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": raw_to, "wa_id": wa}],
                "messages": [{"id": wamid}],
            }
        )

    # -- control routes (for the CLI and the demo) ---------------------------------------
    async def _ctl_inbound(self, request: Request) -> Response:
        body = await request.json()
        media = base64.b64decode(body["media_base64"]) if body.get("media_base64") else None
        try:
            wamid = await self.inject_inbound(
                str(body["from"]),
                str(body["to"]),
                body.get("text") or body.get("caption"),
                media=media,
                mime_type=body.get("mime_type"),
                filename=body.get("filename"),
                reply_to=body.get("reply_to"),
                profile_name=str(body.get("profile_name") or "Simulated User"),
            )
        except (KeyError, ValueError, RuntimeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        last = self.deliveries[-1] if self.deliveries else None
        return JSONResponse({"id": wamid, "webhook_status": last.status_code if last else None})

    async def _ctl_fail(self, request: Request) -> Response:
        body = await request.json()
        code, count = int(body["code"]), int(body.get("count", 1))
        if body.get("mode", "sync") == "async":
            self.fail_async(code, count)
        else:
            self.fail_next(code, count)
        return JSONResponse({"ok": True})

    async def _ctl_modes(self, request: Request) -> Response:
        body = await request.json()
        if "status_modes" in body:
            modes = set(body["status_modes"])
            if not modes <= STATUS_MODES:
                return JSONResponse({"error": f"modes: {sorted(STATUS_MODES)}"}, status_code=400)
            self.status_modes = modes
        if "batch_size" in body:
            self.batch_size = max(1, int(body["batch_size"]))
        if body.get("window_errors") in ("sync", "async"):
            self.window_errors = body["window_errors"]
        return JSONResponse(
            {
                "status_modes": sorted(self.status_modes),
                "batch_size": self.batch_size,
                "window_errors": self.window_errors,
            }
        )

    async def _ctl_flush(self, request: Request) -> Response:
        return JSONResponse({"posted": len(await self.flush())})

    async def _ctl_sends(self, request: Request) -> Response:
        sends = [{**asdict(s), "at": s.at.isoformat()} for s in self.sends]
        return JSONResponse({"sends": sends})

    def _build_app(self) -> Starlette:
        version = "{version:str}"
        return Starlette(
            routes=[
                Route("/_sim/inbound", self._ctl_inbound, methods=["POST"]),
                Route("/_sim/fail", self._ctl_fail, methods=["POST"]),
                Route("/_sim/modes", self._ctl_modes, methods=["POST"]),
                Route("/_sim/flush", self._ctl_flush, methods=["POST"]),
                Route("/_sim/sends", self._ctl_sends, methods=["GET"]),
                Route("/_media/{token:str}", self._download, methods=["GET"]),
                Route(f"/{version}/{{pnid:str}}/messages", self._messages, methods=["POST"]),
                Route(f"/{version}/{{pnid:str}}/media", self._upload, methods=["POST"]),
                Route(f"/{version}/{{oid:str}}", self._get_object, methods=["GET"]),
            ]
        )


# -- command line -------------------------------------------------------------------------
def _numbers(values: Sequence[str]) -> dict[str, str]:
    out = {}
    for value in values:
        number, sep, pnid = value.partition("=")
        if not sep or not _digits(number) or not pnid.isdigit():
            raise SystemExit(f"--number: expected +E164=PHONE_NUMBER_ID, got {value!r}")
        out["+" + (_digits(number) or "")] = pnid
    return out


async def _serve(args: argparse.Namespace) -> None:
    sim = WhatsAppSimulator(
        numbers=_numbers(args.number) if args.number else None,
        webhook_url=args.webhook_url,
        access_token=args.access_token,
        app_secret=args.app_secret,
        verify_token=args.verify_token,
        status_delay=args.status_delay,
        window_errors=args.window_errors,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start(args.host, args.port)
    try:
        print(json.dumps({**sim.connector_options(), "base_url": sim.base_url}), flush=True)
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m connectors.whatsapp.simulator``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m connectors.whatsapp.simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--webhook-url", help="the gateway's /hooks/{connector_id}/ URL")
    parser.add_argument("--number", action="append", default=[], help="+E164=PHONE_NUMBER_ID")
    parser.add_argument("--access-token")
    parser.add_argument("--app-secret")
    parser.add_argument("--verify-token")
    parser.add_argument("--status-delay", type=float, default=0.2, help="seconds")
    parser.add_argument("--window-errors", choices=["async", "sync"], default="async")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
