"""The portal's routes, each behind the guard (``security.py``), with gateway errors
shown as pages."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import GatewayError
from gateway.portal.routes import (
    admin,
    auth,
    compose,
    events,
    inbox,
    settings,
    thread,
    webhooks,
)
from gateway.portal.security import PortalGuard
from gateway.portal.web import STATIC, render

Endpoint = Callable[[Request], Awaitable[Response]]


def pages(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with gateway errors rendered as an error page of their status."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except GatewayError as exc:
            return render(request, "error.html", {"status": exc.status, "error": exc}, exc.status)

    return wrapped


def route(path: str, endpoint: Endpoint, methods: list[str], public: bool = False) -> Route:
    """A portal route: guarded, errors as pages."""
    # Pages, not the REST API: left out of the OpenAPI document.
    return Route(
        path,
        pages(endpoint),
        methods=methods,
        middleware=[Middleware(PortalGuard, public=public)],
        include_in_schema=False,
    )


STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}


@functools.cache
def static_files() -> dict[str, Path]:
    """The files under ``static/`` by their URL path (nothing else is ever served)."""
    return {
        str(p.relative_to(STATIC)): p
        for p in STATIC.rglob("*")
        if p.is_file() and p.suffix in STATIC_TYPES
    }


async def static(request: Request) -> Response:
    """GET /static/{path}: a file of the portal (cached long: URLs carry a version)."""
    path = static_files().get(request.path_params["path"])
    if path is None:
        return Response("not found", 404, media_type="text/plain")
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    return FileResponse(path, headers=headers, media_type=STATIC_TYPES[path.suffix])


GET, POST = ["GET"], ["POST"]


def routes() -> list[BaseRoute]:
    """Every route of the portal."""
    return [
        route("/", inbox.inbox, GET),
        route("/inbox/rows", inbox.rows, GET),
        route("/inbox/unread", inbox.unread_badge, GET),
        route("/new", inbox.new_page, GET),
        route("/new", inbox.create, POST),
        route("/sign-in", auth.sign_in_page, GET, public=True),
        route("/sign-in", auth.sign_in, POST, public=True),
        route("/sign-out", auth.sign_out, POST, public=True),
        route("/invite/{token}", auth.invitation_page, GET, public=True),
        route("/invite/{token}", auth.accept_invitation, POST, public=True),
        route("/lang", auth.switch_language, POST, public=True),
        route("/c/{id}", thread.thread, GET),
        route("/c/{id}/messages", thread.messages, GET),
        route("/c/{id}/composer", compose.composer, GET),
        route("/c/{id}/preview", compose.preview, POST),
        route("/c/{id}/send", compose.send, POST),
        route("/c/{id}/fax/files", compose.fax_files, POST),
        route("/m/{id}", thread.message, GET),
        route("/m/{id}/retry", compose.retry, POST),
        route("/a/{id}", thread.attachment, GET),
        route("/settings", settings.page, GET),
        route("/settings/forwarding", settings.save_forwarding, POST),
        route("/settings/password", settings.change_password, POST),
        route("/admin", admin.members_page, GET),
        route("/admin/members", admin.add_member, POST),
        route("/admin/members/{id}/invite", admin.invite_again, POST),
        route("/admin/members/{id}/active", admin.set_active, POST),
        route("/admin/members/{id}/role", admin.set_role, POST),
        route("/admin/members/{id}/forwarding", admin.member_forwarding, ["GET", "POST"]),
        route("/admin/keys", admin.keys_page, GET),
        route("/admin/keys", admin.create_api_key, POST),
        route("/admin/keys/{id}/revoke", admin.revoke_api_key, POST),
        route("/admin/webhooks", webhooks.page, GET),
        route("/admin/webhooks", webhooks.create, POST),
        route("/admin/webhooks/{id}", webhooks.deliveries, GET),
        route("/admin/webhooks/{id}/enabled", webhooks.set_enabled, POST),
        route("/admin/webhooks/{id}/delete", webhooks.delete, POST),
        route("/admin/webhooks/{id}/deliveries/{delivery_id}/retry", webhooks.retry, POST),
        Route(
            "/events",
            events.EventStream(),
            methods=GET,
            middleware=[Middleware(PortalGuard)],
            include_in_schema=False,
        ),
        Route("/static/{path:path}", static, methods=GET, include_in_schema=False),
    ]
