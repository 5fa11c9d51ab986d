"""Signing in and out, invitations, and the language switch."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, ValidationError
from gateway.portal import accounts, i18n
from gateway.portal.security import cookie, read_form, with_session
from gateway.portal.web import (
    LANG_COOKIE,
    SESSION_COOKIE,
    portal_of,
    render,
    see_other,
)


def safe_next(value: object) -> str:
    """A same-site path to continue to after sign-in (anything else: the inbox)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return "/"
    return value


def client_address(request: Request) -> str:
    """The client's address as this process sees it."""
    return request.client.host if request.client else "unknown"


async def sign_in_page(request: Request) -> Response:
    """GET /sign-in."""
    if request.scope.get("portal_viewer") is not None:
        return see_other(safe_next(request.query_params.get("next")))
    return render(request, "sign_in.html", {"next": safe_next(request.query_params.get("next"))})


async def sign_in(request: Request) -> Response:
    """POST /sign-in: check the password (throttled), rotate the session."""
    portal = await portal_of(request)
    form = await read_form(request)
    email = str(form.get("email") or "")
    password = str(form.get("password") or "")
    target = safe_next(form.get("next"))
    now = portal.rt.clock.now()
    try:
        account = await accounts.authenticate(
            portal.store,
            portal.settings,
            email,
            password,
            client_address(request),
            now,
            portal.rt.store.get_member,
        )
    except accounts.SignInRefused as refused:
        context = {"next": target, "email": email, "refused": refused}
        status = 429 if refused.throttled else 401
        headers = {"Retry-After": str(refused.retry_after)} if refused.throttled else {}
        return render(request, "sign_in.html", context, status, headers)
    old = request.scope.get("portal_viewer")
    replaces = old.session.id if old is not None else None
    token_cookie = request.cookies.get(SESSION_COOKIE)
    if replaces is None and token_cookie:
        replaces = accounts.token_hash(token_cookie)
    _, token = await accounts.start_session(portal.store, portal.settings, account, now, replaces)
    return with_session(portal, see_other(target), token)


async def sign_out(request: Request) -> Response:
    """POST /sign-out: end this session."""
    portal = await portal_of(request)
    await read_form(request)
    viewer = request.scope.get("portal_viewer")
    if viewer is not None:
        await portal.store.end_session(viewer.session.id)
    response = see_other("/sign-in")
    response.headers.append(
        "set-cookie", cookie(SESSION_COOKIE, "", max_age=0, secure=portal.secure)
    )
    return response


async def invitation_page(request: Request) -> Response:
    """GET /invite/{token}: choose a password."""
    portal = await portal_of(request)
    token = request.path_params["token"]
    member_id = await portal.store.peek_invite(accounts.token_hash(token), portal.rt.clock.now())
    member = await portal.rt.directory.member(member_id) if member_id else None
    if member is None:
        return render(request, "invite.html", {"invalid": True, "member": None}, 404)
    return render(request, "invite.html", {"invalid": False, "member": member, "error": None})


async def accept_invitation(request: Request) -> Response:
    """POST /invite/{token}: set the password, use the invitation, sign in."""
    portal = await portal_of(request)
    form = await read_form(request)
    token_hash = accounts.token_hash(request.path_params["token"])
    now = portal.rt.clock.now()
    member_id = await portal.store.peek_invite(token_hash, now)
    member = await portal.rt.directory.member(member_id) if member_id else None
    if member is None or member_id is None:
        return render(request, "invite.html", {"invalid": True, "member": None}, 404)
    password = str(form.get("password") or "")
    try:
        if password != str(form.get("password2") or ""):
            raise ValidationError(i18n._("The two passwords differ."), field="password2")
        hashed = await accounts.hash_password(password)
    except GatewayError as exc:
        context = {"invalid": False, "member": member, "error": exc}
        return render(request, "invite.html", context, 422)
    if await portal.store.take_invite(token_hash, now) != member_id:
        return render(request, "invite.html", {"invalid": True, "member": None}, 404)
    await portal.store.set_password(member_id, hashed, now)
    account = await portal.store.get_account(member_id)
    if account is None:
        return render(request, "invite.html", {"invalid": True, "member": None}, 404)
    _, session_token = await accounts.start_session(
        portal.store, portal.settings, account, now, None
    )
    return with_session(portal, see_other("/"), session_token)


async def switch_language(request: Request) -> Response:
    """POST /lang: remember the chosen language, back to the page."""
    portal = await portal_of(request)
    form = await read_form(request)
    lang = str(form.get("lang") or "")
    response = see_other(safe_next(form.get("next")))
    if lang in i18n.LOCALES:
        response.headers.append(
            "set-cookie", cookie(LANG_COOKIE, lang, max_age=365 * 86400, secure=portal.secure)
        )
    return response
