"""The guard around every portal route: language, security headers, session, sign-in
requirement and CSRF.

CSRF: a state change (POST and the like) is accepted when the browser says it comes from
this site — ``Sec-Fetch-Site: same-origin`` (Fetch Metadata), or else an ``Origin`` equal
to this host or the public URL — and refused when it says otherwise. A browser that
sends neither must send the form's token (the session's, or for signed-out forms the
``portal_csrf`` cookie's, double-submit), which ``read_form`` checks. Cookies are
HttpOnly and SameSite=Lax, and Secure when the public URL is https.

The Content-Security-Policy allows scripts, styles and connections from this origin only,
and no inline script or style: everything the portal runs is in its static files.

While the store cannot be reached (Redis down or restarting) a page is a 503 page saying
so, with ``Retry-After`` (as the API answers ``store_unavailable``), not a traceback.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers, MutableHeaders, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import Forbidden, PayloadTooLarge, ValidationError
from gateway.portal import i18n
from gateway.portal.accounts import (
    TOUCH_EVERY,
    Viewer,
    new_token,
    session_alive,
    token_hash,
)
from gateway.portal.web import (
    CSRF_COOKIE,
    LANG_COOKIE,
    SESSION_COOKIE,
    Portal,
    portal_for,
    render,
)
from gateway.store import UNAVAILABLE

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
log = logging.getLogger("gateway.portal.security")

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_FORM = 64 * 1024  # a form without files


def cookie(
    name: str, value: str, *, max_age: int | None, secure: bool, same_site: str = "Lax"
) -> str:
    """A ``Set-Cookie`` value (HttpOnly always; ``max_age`` 0 deletes it)."""
    parts = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={same_site}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def with_session(portal: Portal, response: Response, token: str) -> Response:
    """``response`` setting the session cookie ``token``."""
    max_age = int(portal.settings.session_days * 86400)
    response.headers.append(
        "set-cookie", cookie(SESSION_COOKIE, token, max_age=max_age, secure=portal.secure)
    )
    return response


def cookies_of(headers: Headers) -> dict[str, str]:
    """The request's cookies."""
    jar: SimpleCookie = SimpleCookie()
    for raw in headers.getlist("cookie"):
        try:
            jar.load(raw)
        except Exception:  # a malformed cookie header from a stranger: ignore it
            continue
    return {k: m.value for k, m in jar.items()}


def same_origin(headers: Headers, public_url: str) -> bool | None:
    """True/False when the browser told where the request comes from; None when it sent
    neither Fetch Metadata nor an Origin (the token must decide)."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return None
    host = headers.get("host", "")
    parsed = urlsplit(origin)
    public = urlsplit(public_url)
    return parsed.netloc == host or (parsed.scheme, parsed.netloc) == (
        public.scheme,
        public.netloc,
    )


async def resolve(portal: Portal, token: str | None) -> Viewer | None:
    """The viewer a session cookie signs in, or None (an ended session is removed)."""
    if not token:
        return None
    store, rt = portal.store, portal.rt
    session = await store.get_session(token_hash(token))
    if session is None:
        return None
    now = rt.clock.now()
    if not session_alive(session, portal.settings, now):
        await store.end_session(session.id)
        return None
    account = await store.get_account(session.member_id)
    member = await rt.directory.member(session.member_id)
    team = await rt.directory.team(session.team_id)
    if account is None or member is None or team is None or not member.active:
        await store.end_session(session.id)
        return None
    if now - session.last_seen_at > TOUCH_EVERY:
        await store.touch_session(session.id, now)
    return Viewer(session, account, member, team)


class PortalGuard:
    """Pure ASGI middleware around one portal route (see the module docstring).

    ``public`` routes (sign-in, invitations, static files) serve signed-out visitors too;
    the others send them to the sign-in page."""

    def __init__(self, app: ASGIApp, public: bool = False) -> None:
        self.app = app
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Guard one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._guard(scope, receive, tracked)
        except UNAVAILABLE as exc:
            if started:  # an event stream that was open: it ends, the browser reconnects
                raise
            log.warning("portal %s %s: the store is unavailable: %s", scope["method"],
                        scope["path"], exc)  # fmt: skip
            scope.setdefault("portal_lang", i18n.DEFAULT)
            response = render(
                Request(scope, receive),
                "error.html",
                {"status": 503},
                503,
                headers={**HEADERS, "cache-control": "no-store", "retry-after": "1"},
            )
            await response(scope, receive, send)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        portal = await portal_for(scope["app"].state.rt)
        headers = Headers(scope=scope)
        jar = cookies_of(headers)
        lang = i18n.negotiate(headers.get("accept-language"), jar.get(LANG_COOKIE))
        i18n.activate(lang)
        scope["portal"] = portal
        # Where the live tail stood before this page read anything: its event stream
        # resumes from here, so an event between rendering and the stream's opening is
        # not lost (None: the tail has not started; the stream starts where it stands).
        scope["portal_live_since"] = portal.hub.seq
        scope["portal_lang"] = lang
        scope["portal_formats"] = i18n.Formats(lang, portal.rt.settings.tz)
        set_cookies: list[str] = []
        viewer = await resolve(portal, jar.get(SESSION_COOKIE))
        if viewer is not None:
            scope["portal_viewer"] = viewer
            scope["portal_csrf"] = viewer.session.csrf
        else:
            if jar.get(SESSION_COOKIE):
                set_cookies.append(cookie(SESSION_COOKIE, "", max_age=0, secure=portal.secure))
            token = jar.get(CSRF_COOKIE) or ""
            if len(token) < 32:
                token = new_token()
                set_cookies.append(
                    cookie(
                        CSRF_COOKIE, token, max_age=None, secure=portal.secure, same_site="Strict"
                    )
                )
            scope["portal_csrf"] = token

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    out.setdefault(name, value)
                out.setdefault("cache-control", "no-store")
                for value in set_cookies:
                    out.append("set-cookie", value)
            await send(message)

        request = Request(scope, receive)
        if not portal.settings.enabled:
            await self._error(request, 404, send_with_headers)
            return
        if scope["method"] in UNSAFE:
            verdict = same_origin(headers, portal.rt.settings.public_url)
            if verdict is False:
                await self._error(request, 403, send_with_headers)
                return
            scope["portal_csrf_token_required"] = verdict is None
        if viewer is None and not self.public:
            if scope["method"] == "GET" and headers.get("accept", "").find("text/event-stream") < 0:
                target = scope["path"] + (
                    f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
                )
                location = "/sign-in?next=" + quote(target, safe="/")
                if headers.get("hx-request") == "true":
                    response_headers = [(b"hx-redirect", location.encode())]
                    await send_with_headers(
                        {"type": "http.response.start", "status": 204, "headers": response_headers}
                    )
                    await send_with_headers({"type": "http.response.body", "body": b""})
                    return
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [(b"location", location.encode())],
                    }
                )
                await send_with_headers({"type": "http.response.body", "body": b""})
                return
            await self._error(request, 401, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _error(request: Request, status: int, send: Send) -> None:
        response = render(request, "error.html", {"status": status}, status)
        await response(request.scope, request.receive, send)


@dataclass(slots=True, frozen=True)
class Upload:
    """A file of a posted form, read into memory (the form's limit bounds it)."""

    filename: str
    content_type: str
    data: bytes


class Form:
    """A posted form: text fields and uploads, nothing left open."""

    def __init__(self, items: list[tuple[str, str | Upload]]) -> None:
        self._items = items

    def get(self, name: str) -> str | None:
        """The first text value of ``name``."""
        return next((v for k, v in self._items if k == name and isinstance(v, str)), None)

    def getlist(self, name: str) -> list[str]:
        """Every text value of ``name``."""
        return [v for k, v in self._items if k == name and isinstance(v, str)]

    def files(self, name: str) -> list[Upload]:
        """Every file of ``name`` that has a name (an empty file input sends none)."""
        return [v for k, v in self._items if k == name and isinstance(v, Upload) and v.filename]


async def read_form(request: Request, limit: int = MAX_FORM) -> Form:
    """The posted form (bounded), with the CSRF token checked when the browser sent no
    Fetch Metadata or Origin header."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the form is larger than {limit} bytes")
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the form is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    items: list[tuple[str, str | Upload]] = []
    try:
        async with Request(request.scope, replay).form(max_files=10, max_fields=50) as parsed:
            for key, value in parsed.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    ctype = value.content_type or "application/octet-stream"
                    items.append((key, Upload(value.filename or "", ctype, data)))
                else:
                    items.append((key, value))
    except MultiPartException as exc:
        raise ValidationError(f"the form could not be read: {exc.message}") from None
    form = Form(items)
    if request.scope.get("portal_csrf_token_required"):
        expected = str(request.scope.get("portal_csrf", ""))
        given = form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not expected or not hmac.compare_digest(given, expected):
            raise Forbidden("the form's security token is missing or wrong", code="csrf")
    return form
