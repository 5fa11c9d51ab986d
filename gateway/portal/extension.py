"""The portal as a gateway extension (entry point ``gateway.extensions: portal``).

The core never imports the portal: ``gateway.config`` parses ``[portal]`` with
:meth:`~PortalExtension.parse_settings`, ``Runtime.create`` opens the ``PortalStore`` role
(:meth:`~PortalExtension.storage`), ``create_app`` serves :meth:`~PortalExtension.routes`
(pages at ``/``, left out of the OpenAPI document), and ``Worker.run`` runs the
invitation mails (:meth:`~PortalExtension.job_handlers`) and
:meth:`~PortalExtension.run`, which keeps the inbox index up to date from the event log
even while nobody has the portal open. Uninstalling the entry point (or ``[portal]
enabled = false``) switches it off.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.portal import settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand, Extension, Host
    from gateway.models import JobHandler, Member
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

    def job_handlers(self, host: Host) -> Mapping[str, JobHandler]:
        """``portal_invite``: an invitation mail (``invites.py``), bound to ``host``."""
        from gateway.portal.invites import JOB_KIND, invitation_job

        return {JOB_KIND: functools.partial(invitation_job, host)}

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """Index the event log and feed the live streams until ``stop`` is set."""
        from gateway.portal.web import portal_for
        from gateway.runtime import Runtime

        # Part of the core package, the portal sends through the core's outbound path,
        # which takes the process's Runtime (the host every gateway process passes).
        if not isinstance(host, Runtime):
            raise TypeError("the portal runs in a gateway process (a Runtime host)")
        portal = await portal_for(host)
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

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """Portal passwords for the demo members, and their sign-ins for the banner."""
        from gateway.portal.admin_cli import demo

        return await demo(host, members)

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """None offered."""
        return {}


EXTENSION: Extension = PortalExtension()
