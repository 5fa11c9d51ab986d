"""Team administration (role ``admin``): members, team usage, members' forwarding and API
keys. Another team's objects do not exist here (404), and a member who is not an admin
gets 404 too: the pages are not there for them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.admin import create_member, parse_addons
from gateway.auth import Principal, create_key, keys_changed, revoke_key
from gateway.errors import Forbidden, GatewayError, NotFound, ValidationError
from gateway.models import Addon, Member, Plan
from gateway.portal import i18n, invites
from gateway.portal.accounts import Viewer
from gateway.portal.routes.settings import forwarding_context, rules_from_form, save_rules
from gateway.portal.security import read_form
from gateway.portal.storage import ROLE_ADMIN, ROLES, Account
from gateway.portal.views import channel_name
from gateway.portal.web import Portal, lang_of, portal_of, render, see_other, viewer_of
from gateway.quota import period_of, quota_report


def admin_of(request: Request) -> Viewer:
    """The signed-in team admin (anyone else: 404)."""
    viewer = viewer_of(request)
    if not viewer.is_admin:
        raise NotFound("not found")
    return viewer


def team_principal(viewer: Viewer) -> Principal:
    """The admin acting for the whole team."""
    return Principal(viewer.team.id, None, "portal")


async def _member(portal: Portal, viewer: Viewer, member_id: str) -> Member:
    member = await portal.rt.store.get_member(member_id)
    if member is None or member.team_id != viewer.team.id:
        raise NotFound("member not found")
    return member


async def members_context(
    portal: Portal,
    viewer: Viewer,
    notice: str | None = None,
    error: GatewayError | None = None,
    values: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The members page."""
    members = await portal.rt.store.list_members(viewer.team.id)
    accounts = {a.member_id: a for a in await portal.store.list_accounts(viewer.team.id)}
    period = period_of(portal.rt.clock.now(), portal.rt.settings.tz)
    report = await quota_report(
        portal.rt.store, portal.rt.settings.tariff, viewer.team, members, period
    )
    return {
        "members": members,
        "accounts": accounts,
        "report": report,
        "roles": ROLES,
        "addons": [a.value for a in Addon],
        "channel_name": channel_name,
        "plan_max": Plan(viewer.team.plan).max_members,
        "notice": notice,
        "error": error,
        "values": values or {},
    }


async def members_page(request: Request) -> Response:
    """GET /admin: members and this month's team usage."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    return render(request, "admin/members.html", await members_context(portal, viewer))


async def _invite(request: Request, portal: Portal, viewer: Viewer, member: Member) -> None:
    """Queue an invitation mail from the admin, in the page's language."""
    await invites.queue_invitation(
        portal.rt, portal.store, member, viewer.member.name, lang_of(request)
    )


async def add_member(request: Request) -> Response:
    """POST /admin/members: a new member with a portal account, invited by mail."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    values = {k: str(form.get(k) or "").strip() for k in ("name", "email", "mobile", "fax", "role")}
    addons = ",".join(form.getlist("addons"))
    try:
        role = values["role"] or "member"
        if role not in ROLES:
            raise ValidationError(i18n._("Choose a role."), field="role")
        if await portal.store.account_by_email(values["email"]) is not None:
            raise ValidationError(
                i18n._("That email already signs in to the portal."), field="email"
            )
        member = await create_member(
            portal.rt.store,
            portal.rt.clock,
            viewer.team.id,
            values["name"],
            values["email"],
            values["mobile"] or None,
            values["fax"] or None,
            parse_addons(addons),
        )
    except GatewayError as exc:
        context = await members_context(portal, viewer, error=exc, values=values)
        return render(request, "admin/members.html", context, 422)
    await portal.store.put_account(
        Account(member.id, member.team_id, member.email, role, portal.rt.clock.now())
    )
    notice = i18n._("{name} was added; the invitation mail is queued.").format(name=member.name)
    try:
        await _invite(request, portal, viewer, member)
    except GatewayError as exc:
        notice = i18n._("{name} was added, but the invitation was not sent: {reason}").format(
            name=member.name, reason=exc.detail
        )
    return render(request, "admin/members.html", await members_context(portal, viewer, notice))


async def invite_again(request: Request) -> Response:
    """POST /admin/members/{id}/invite: a new invitation mail (with a new link)."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    await read_form(request)
    member = await _member(portal, viewer, request.path_params["id"])
    if await portal.store.get_account(member.id) is None:
        await portal.store.put_account(
            Account(member.id, member.team_id, member.email, "member", portal.rt.clock.now())
        )
    try:
        await _invite(request, portal, viewer, member)
    except GatewayError as exc:
        context = await members_context(portal, viewer, error=exc)
        return render(request, "admin/members.html", context, 422)
    notice = i18n._("A new invitation to {email} is queued.").format(email=member.email)
    return render(request, "admin/members.html", await members_context(portal, viewer, notice))


async def set_active(request: Request) -> Response:
    """POST /admin/members/{id}/active: deactivate (ending the member's sessions) or
    activate (within the plan)."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    member = await _member(portal, viewer, request.path_params["id"])
    active = form.get("active") == "1"
    try:
        if member.id == viewer.member.id and not active:
            raise Forbidden(i18n._("You cannot deactivate yourself."))
        await portal.rt.store.set_member_active(
            member.id, active, Plan(viewer.team.plan).max_members
        )
    except GatewayError as exc:
        context = await members_context(portal, viewer, error=exc)
        return render(request, "admin/members.html", context, 422)
    if not active:
        await portal.store.end_sessions(member.id)
        await keys_changed(portal.rt.store)  # the member's API keys stop everywhere too
    return see_other("/admin", request)


async def set_role(request: Request) -> Response:
    """POST /admin/members/{id}/role."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    member = await _member(portal, viewer, request.path_params["id"])
    role = str(form.get("role") or "")
    try:
        if role not in ROLES:
            raise ValidationError(i18n._("Choose a role."), field="role")
        if member.id == viewer.member.id and role != ROLE_ADMIN:
            raise Forbidden(i18n._("You cannot take your own admin role."))
        if not await portal.store.set_role(member.id, role):
            await portal.store.put_account(
                Account(member.id, member.team_id, member.email, role, portal.rt.clock.now())
            )
    except GatewayError as exc:
        context = await members_context(portal, viewer, error=exc)
        return render(request, "admin/members.html", context, 422)
    return see_other("/admin", request)


async def member_forwarding(request: Request) -> Response:
    """GET/POST /admin/members/{id}/forwarding: a member's forwarding rules."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    member = await _member(portal, viewer, request.path_params["id"])
    principal = team_principal(viewer)
    if request.method == "GET":
        context = await forwarding_context(portal, principal, member)
        return render(request, "admin/forwarding.html", {"fwd": context})
    form = await read_form(request)
    body = rules_from_form(form, member.id)
    try:
        rules = await save_rules(portal, principal, member, body)
    except GatewayError as exc:
        context = await forwarding_context(portal, principal, member, exc, rules=body)
        return render(request, "admin/forwarding.html", {"fwd": context}, 422)
    context = await forwarding_context(portal, principal, member, saved=True, rules=rules)
    return render(request, "admin/forwarding.html", {"fwd": context})


async def keys_context(portal: Portal, viewer: Viewer, secret: str | None = None) -> dict[str, Any]:
    """The API keys page."""
    keys = await portal.rt.store.list_api_keys(viewer.team.id)
    members = {m.id: m for m in await portal.rt.store.list_members(viewer.team.id)}
    return {"keys": keys, "members": members, "secret": secret}


async def keys_page(request: Request) -> Response:
    """GET /admin/keys."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    return render(request, "admin/keys.html", await keys_context(portal, viewer))


KEY_VALIDITY_DAYS = ("", "30", "90", "365")  # the form's choices ("": until revoked)


async def create_api_key(request: Request) -> Response:
    """POST /admin/keys: a new key, its secret shown this once."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    member_id = str(form.get("member") or "") or None
    if member_id is not None:
        await _member(portal, viewer, member_id)
    days = str(form.get("valid_days") or "")
    if days not in KEY_VALIDITY_DAYS:
        raise ValidationError(i18n._("Choose how long the key is valid."), field="valid_days")
    expires = portal.rt.clock.now() + timedelta(days=int(days)) if days else None
    _, secret = await create_key(
        portal.rt.store, portal.rt.clock, viewer.team.id, member_id, expires_at=expires
    )
    return render(request, "admin/keys.html", await keys_context(portal, viewer, secret))


async def revoke_api_key(request: Request) -> Response:
    """POST /admin/keys/{id}/revoke."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    await read_form(request)
    if not await revoke_key(portal.rt.store, viewer.team.id, request.path_params["id"]):
        raise NotFound("key not found")
    return see_other("/admin/keys", request)
