"""The member's settings: forwarding rules, the quota chart, the password."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import forwarding
from gateway.auth import Principal
from gateway.commands import FORWARDABLE, ForwardingRules, convert
from gateway.errors import GatewayError, ValidationError
from gateway.models import Member
from gateway.portal import accounts, chart, i18n
from gateway.portal.compose import principal_of
from gateway.portal.security import Form, read_form, with_session
from gateway.portal.views import channel_name
from gateway.portal.web import Portal, portal_of, render, see_other, viewer_of
from gateway.quota import period_of


def rules_from_form(form: Form, member_id: str) -> dict[str, Any]:
    """The forwarding rules a form asks for, as the body of ``PUT .../forwarding``."""

    def lines(name: str) -> list[str]:
        raw = str(form.get(name) or "")
        return [line.strip() for line in raw.replace(",", "\n").splitlines() if line.strip()]

    return {
        "member_id": member_id,
        "enabled": form.get("enabled") == "on",
        "channels": [c for c in FORWARDABLE if form.get(f"channel_{c}") == "on"],
        "email": lines("email"),
        "sms": lines("sms"),
    }


async def save_rules(
    portal: Portal, principal: Principal, member: Member, body: dict[str, Any]
) -> dict[str, Any]:
    """Replace ``member``'s forwarding rules with what the form asks for: the form is
    checked as the typed command ``ForwardingRules`` (refused in the API's words), then by
    the forwarding rules' own checks; the rules as the API answers them."""
    asked = convert(ForwardingRules, body)
    return await forwarding.put_rules(portal.rt, principal, member.id, asked)


async def forwarding_context(
    portal: Portal,
    principal: Principal,
    member: Member,
    error: GatewayError | None = None,
    saved: bool = False,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``_forwarding.html`` shows for ``member``."""
    if rules is None:
        rules = await forwarding.get_rules(portal.rt, principal, member.id)
    return {
        "member": member,
        "rules": rules,
        "forwardable": FORWARDABLE,
        "channel_name": channel_name,
        "smtp": portal.rt.settings.smtp is not None,
        "error": error,
        "saved": saved,
        "sms_units_per": portal.rt.settings.tariff.chars_per_unit.get("sms", 160),
    }


async def page(request: Request) -> Response:
    """GET /settings."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    now = portal.rt.clock.now()
    current = period_of(now, portal.rt.settings.tz)
    charts = await chart.usage(
        portal.rt.store, portal.rt.settings.tariff, viewer.team.id, viewer.member.id, current
    )
    context = {
        "fwd": await forwarding_context(portal, principal_of(viewer), viewer.member),
        "charts": charts,
        "chart": chart,
        "channel_name": channel_name,
        "password_error": None,
        "password_saved": False,
    }
    return render(request, "settings.html", context)


async def save_forwarding(request: Request) -> Response:
    """POST /settings/forwarding: replace the member's own forwarding rules."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    form = await read_form(request)
    body = rules_from_form(form, viewer.member.id)
    principal = principal_of(viewer)
    try:
        rules = await save_rules(portal, principal, viewer.member, body)
    except GatewayError as exc:
        context = await forwarding_context(portal, principal, viewer.member, exc, rules=body)
        return render(request, "_forwarding.html", {"fwd": context}, 422)
    context = await forwarding_context(portal, principal, viewer.member, saved=True, rules=rules)
    if request.headers.get("hx-request") != "true":
        return see_other("/settings")
    return render(request, "_forwarding.html", {"fwd": context})


async def change_password(request: Request) -> Response:
    """POST /settings/password: needs the current one; ends the member's other sessions
    (this browser gets a new one)."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    form = await read_form(request)
    now = portal.rt.clock.now()
    try:
        current = str(form.get("current") or "")
        new = str(form.get("password") or "")
        if new != str(form.get("password2") or ""):
            raise ValidationError(i18n._("The two passwords differ."), field="password2")
        try:
            await accounts.authenticate(
                portal.store,
                portal.settings,
                viewer.account.email,
                current,
                request.client.host if request.client else "unknown",
                now,
                portal.rt.store.get_member,
            )
        except accounts.SignInRefused:
            raise ValidationError(
                i18n._("The current password is wrong."), field="current"
            ) from None
        hashed = await accounts.hash_password(new)
    except GatewayError as exc:
        return render(
            request, "_password.html", {"password_error": exc, "password_saved": False}, 422
        )
    await portal.store.set_password(viewer.member.id, hashed, now)
    account = await portal.store.get_account(viewer.member.id)
    response = render(request, "_password.html", {"password_error": None, "password_saved": True})
    if account is not None:
        _, token = await accounts.start_session(portal.store, portal.settings, account, now, None)
        return with_session(portal, response, token)
    return response
