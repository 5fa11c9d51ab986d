"""What every portal route uses: the process's ``Portal`` (storage, settings, live hub,
templates), the signed-in viewer, and rendering pages and htmx partials."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from gateway.errors import NotFound
from gateway.portal import i18n
from gateway.portal.accounts import Viewer
from gateway.portal.live import Hub, contact_label
from gateway.portal.roles import PORTAL_STORE
from gateway.portal.settings import PortalSettings
from gateway.portal.storage import PortalStore
from gateway.runtime import Runtime

HERE = Path(__file__).parent
STATIC = HERE / "static"
SESSION_COOKIE = "portal_session"
LANG_COOKIE = "portal_lang"
CSRF_COOKIE = "portal_csrf"  # the signed-out forms' double-submit token


def settings_of(rt: Runtime) -> PortalSettings:
    """The ``[portal]`` settings of this process."""
    return rt.settings.extension("portal", PortalSettings)


@dataclass(slots=True)
class Portal:
    """The portal's state in one gateway process."""

    rt: Runtime
    store: PortalStore
    settings: PortalSettings
    hub: Hub

    @property
    def secure(self) -> bool:
        """Whether cookies are marked Secure (the public URL is https)."""
        return self.rt.settings.public_url.startswith("https://")


_PORTALS: weakref.WeakKeyDictionary[Runtime, Portal] = weakref.WeakKeyDictionary()
_LOCKS: weakref.WeakKeyDictionary[Runtime, asyncio.Lock] = weakref.WeakKeyDictionary()


async def portal_for(rt: Runtime) -> Portal:
    """The portal of ``rt``'s process (its storage opened on first use)."""
    portal = _PORTALS.get(rt)
    if portal is not None:
        return portal
    lock = _LOCKS.setdefault(rt, asyncio.Lock())
    async with lock:
        portal = _PORTALS.get(rt)
        if portal is None:
            settings = settings_of(rt)
            store = rt.role(PORTAL_STORE)
            hub = Hub(
                rt.store,
                store,
                rt.settings.region,
                settings.poll_interval,
                settings.heartbeat_seconds,
                shared=rt.store.coordination(),
            )
            portal = Portal(rt, store, settings, hub)
            _PORTALS[rt] = portal
    return portal


async def portal_of(request: Request) -> Portal:
    """The portal serving ``request``."""
    return await portal_for(request.app.state.rt)


def viewer_of(request: Request) -> Viewer:
    """The signed-in member (the routes that need one are behind the sign-in check)."""
    viewer = request.scope.get("portal_viewer")
    if not isinstance(viewer, Viewer):
        raise NotFound("not signed in")
    return viewer


def lang_of(request: Request) -> str:
    """The request's language."""
    return str(request.scope.get("portal_lang", i18n.DEFAULT))


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (it wants a partial)."""
    return request.headers.get("hx-request") == "true"


@cache
def static_version(name: str) -> str:
    """A short digest of a static file, so that a changed file gets a new URL."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    """The URL of a static file, with its version."""
    return f"/static/{name}?v={static_version(name)}"


@cache
def environment() -> Environment:
    """The templates (autoescaped, strict about undefined names, translated)."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        # No trim_blocks: it would glue attributes split over lines by {% if %} blocks.
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    gettext, ngettext = i18n.gettext_callables()
    env.install_gettext_callables(gettext, ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["static"] = static_url
    return env


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """Render template ``name`` for ``request`` (the viewer, language and CSRF token are
    always in the context)."""
    viewer = request.scope.get("portal_viewer")
    lang = lang_of(request)
    ctx: dict[str, Any] = {
        "request": request,
        "viewer": viewer,
        "lang": lang,
        "fmt": request.scope.get("portal_formats") or i18n.Formats(lang, ZoneInfo("UTC")),
        "csrf": request.scope.get("portal_csrf", ""),
        "path": request.url.path,
        "live_since": request.scope.get("portal_live_since"),
        "region_number": functools.partial(
            contact_label, region=viewer.team.region if viewer is not None else "DE"
        ),
    }
    if context:
        ctx.update(context)
    html = environment().get_template(name).render(ctx)
    return HTMLResponse(html, status, headers=dict(headers or {}))


def see_other(url: str, request: Request | None = None) -> Response:
    """Go to ``url`` after a form: a 303, or for htmx a client-side redirect."""
    if request is not None and is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, 303)
