"""The portal as a gateway extension (entry point ``gateway.extensions: portal``).

The core never imports the portal: ``create_app`` serves :meth:`routes` (pages at ``/``,
left out of the OpenAPI document), and ``Worker.run`` runs :meth:`run`, which keeps the
inbox index up to date from the event log even while nobody has the portal open.
Uninstalling the entry point (or ``[portal] enabled = false``) switches it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from gateway.runtime import Runtime


class PortalExtension:
    """Routes and the event-log tail of the portal."""

    name = "portal"

    def routes(self) -> Sequence[BaseRoute]:
        """The portal's pages, partials, event stream and static files."""
        from gateway.portal.routes import routes

        return routes()

    def openapi(self) -> dict[str, Any]:
        """Nothing: the portal's routes are pages, not part of the REST API."""
        return {}

    async def run(self, rt: Runtime, stop: asyncio.Event) -> None:
        """Index the event log and feed the live streams until ``stop`` is set."""
        from gateway.portal.web import portal_for

        portal = await portal_for(rt)
        if not portal.settings.enabled:
            return
        portal.hub.start()
        try:
            await stop.wait()
        finally:
            await portal.hub.stop()


EXTENSION = PortalExtension()
