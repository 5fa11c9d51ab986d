"""Team administration of webhook endpoints and their delivery log, through the
``WebhookAdmin`` service the webhooks extension offers (``gateway/services.py``): the
portal never imports ``webhooks/``, and without that extension the page says so."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, NotFound
from gateway.extensions import service
from gateway.models import parse_iso
from gateway.portal import i18n
from gateway.portal.routes.admin import admin_of
from gateway.portal.security import read_form
from gateway.portal.web import Portal, portal_of, render, see_other
from gateway.services import WEBHOOK_ADMIN, WebhookAdmin

PAGE = 25
STATUSES = ("pending", "succeeded", "failed")


def _admin(portal: Portal) -> WebhookAdmin | None:
    return service(portal.rt, WEBHOOK_ADMIN)


def _required(portal: Portal) -> WebhookAdmin:
    """The webhooks extension's admin service; 404 when it is not installed."""
    hooks = _admin(portal)
    if hooks is None:
        raise NotFound("webhooks are not installed")
    return hooks


async def _context(
    portal: Portal, team_id: str, secret: str | None = None, error: GatewayError | None = None
) -> dict[str, Any]:
    hooks = _admin(portal)
    if hooks is None:
        return {"available": False, "endpoints": [], "types": [], "secret": None, "error": None}
    return {
        "available": True,
        "endpoints": await hooks.list_endpoints(team_id),
        "types": list(hooks.event_types()),
        "secret": secret,
        "error": error,
    }


async def page(request: Request) -> Response:
    """GET /admin/webhooks: the team's endpoints."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    return render(request, "admin/webhooks.html", await _context(portal, viewer.team.id))


async def create(request: Request) -> Response:
    """POST /admin/webhooks: a new endpoint, its signing secret shown once."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    hooks = _required(portal)
    try:
        _, secret = await hooks.create_endpoint(
            viewer.team.id,
            form.get("url") or "",
            form.getlist("events"),
            form.get("description") or None,
        )
    except GatewayError as exc:
        return render(
            request, "admin/webhooks.html", await _context(portal, viewer.team.id, error=exc), 422
        )
    return render(request, "admin/webhooks.html", await _context(portal, viewer.team.id, secret))


async def set_enabled(request: Request) -> Response:
    """POST /admin/webhooks/{id}/enabled."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    form = await read_form(request)
    hooks = _required(portal)
    await hooks.set_enabled(viewer.team.id, request.path_params["id"], form.get("enabled") == "1")
    return see_other("/admin/webhooks", request)


async def delete(request: Request) -> Response:
    """POST /admin/webhooks/{id}/delete."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    await read_form(request)
    hooks = _required(portal)
    await hooks.delete_endpoint(viewer.team.id, request.path_params["id"])
    return see_other("/admin/webhooks", request)


def status_names() -> dict[str, str]:
    """The delivery statuses in the request's language."""
    return {"pending": i18n._("pending"), "succeeded": i18n._("succeeded"),
            "failed": i18n._("failed")}  # fmt: skip


async def deliveries(request: Request) -> Response:
    """GET /admin/webhooks/{id}: the endpoint's delivery log (``status``, ``cursor``)."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    hooks = _required(portal)
    endpoint_id = request.path_params["id"]
    found = [e for e in await hooks.list_endpoints(viewer.team.id) if e["id"] == endpoint_id]
    if not found:
        raise NotFound("webhook endpoint not found")
    status = request.query_params.get("status")
    status = status if status in STATUSES else None
    items, next_cursor = await hooks.list_deliveries(
        viewer.team.id, endpoint_id, status, request.query_params.get("cursor") or None, PAGE
    )
    for item in items:  # times shown in the member's language and zone
        item["created"] = parse_iso(item["created_at"])
        nxt = item.get("next_attempt_at")
        item["next"] = parse_iso(nxt) if nxt else None
    context = {
        "endpoint": found[0],
        "deliveries": items,
        "status_names": status_names(),
        "next_cursor": next_cursor,
        "status": status,
        "statuses": STATUSES,
        "retried": request.query_params.get("retried"),
    }
    return render(request, "admin/deliveries.html", context)


async def retry(request: Request) -> Response:
    """POST /admin/webhooks/{id}/deliveries/{delivery_id}/retry."""
    portal = await portal_of(request)
    viewer = admin_of(request)
    await read_form(request)
    hooks = _required(portal)
    endpoint_id = request.path_params["id"]
    await hooks.retry_delivery(viewer.team.id, endpoint_id, request.path_params["delivery_id"])
    return see_other(f"/admin/webhooks/{endpoint_id}?retried=1", request)
