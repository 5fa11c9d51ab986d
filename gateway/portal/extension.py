"""The portal as a gateway extension (entry point ``gateway.extensions: portal``).

The core never imports the portal: ``gateway.config`` parses ``[portal]`` with
:meth:`~PortalExtension.parse_settings`, ``Runtime.create`` opens the ``PortalStore`` role
(:meth:`~PortalExtension.storage`), ``create_app`` serves :meth:`~PortalExtension.routes`
(pages at ``/``, left out of the OpenAPI document), and ``Worker.run`` runs
:meth:`~PortalExtension.run`, which keeps the inbox index up to date from the event log
even while nobody has the portal open. Uninstalling the entry point (or ``[portal]
enabled = false``) switches it off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.portal import settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand
    from gateway.models import Member
    from gateway.runtime import Runtime
    from gateway.services import ServiceKey
    from gateway.store.roles import Role


class PortalExtension:
    """Routes and the event-log tail of the portal."""

    name = "portal"

    def parse_settings(self, table: Mapping[str, Any] | None) -> settings.PortalSettings:
        """The ``[portal]`` section (``gateway/portal/settings.py``)."""
        return settings.parse_settings(table)

    def storage(self) -> Sequence[Role[Any]]:
        """Accounts, sessions, drafts, read state and the inbox index: ``PortalStore``."""
        from gateway.portal.roles import PORTAL_STORE

        return (PORTAL_STORE,)

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

    def admin_commands(self) -> Sequence[AdminCommand]:
        """``gateway admin member set-password``."""
        from gateway.portal.admin_cli import SET_PASSWORD

        return (SET_PASSWORD,)

    async def demo(self, rt: Runtime, members: Sequence[Member]) -> str:
        """Portal passwords for the demo members, and their sign-ins for the banner."""
        from gateway.portal.admin_cli import demo

        return await demo(rt, members)

    def services(self, rt: Runtime) -> Mapping[ServiceKey[Any], object]:
        """None offered."""
        return {}


EXTENSION = PortalExtension()
