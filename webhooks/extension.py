"""The webhooks as a gateway extension (entry point ``gateway.extensions: webhooks``).

The gateway core finds this object through the entry point and never imports the
package: ``gateway.config`` parses the ``[webhooks]`` section with
:meth:`~WebhooksExtension.parse_settings`, ``Runtime.create`` opens the storage role of
:meth:`~WebhooksExtension.storage`, ``create_app`` serves :meth:`~WebhooksExtension.routes`,
the OpenAPI document merges :meth:`~WebhooksExtension.openapi`, and ``Worker.run``
(``gateway serve`` and ``gateway worker``) runs :meth:`~WebhooksExtension.run`, the
delivery engine. The other imports wait for the first call, so loading the entry point
(which the configuration does) costs little.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from webhooks import settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand
    from gateway.models import Member
    from gateway.runtime import Runtime
    from gateway.services import ServiceKey
    from gateway.store.roles import Role


class WebhooksExtension:
    """Settings, storage, routes, OpenAPI part and delivery engine of the webhooks."""

    name = settings.SECTION

    def parse_settings(self, table: Mapping[str, Any] | None) -> settings.WebhookSettings:
        """The ``[webhooks]`` section (``webhooks/settings.py``)."""
        return settings.parse(table)

    def storage(self) -> Sequence[Role[Any]]:
        """Endpoints and deliveries: the ``WebhookStore`` role."""
        from webhooks.storage import WEBHOOK_STORE

        return (WEBHOOK_STORE,)

    def routes(self) -> Sequence[BaseRoute]:
        """The ``/v1/webhook-endpoints`` routes."""
        from webhooks.api import ROUTES

        return ROUTES

    def openapi(self) -> dict[str, Any]:
        """Paths, schemas, tags and webhooks for the API's document."""
        from webhooks.openapi import document

        return document()

    async def run(self, rt: Runtime, stop: asyncio.Event) -> None:
        """Fan events out and deliver them until ``stop`` is set."""
        from webhooks.delivery import Engine

        await Engine(rt).run(stop)

    def admin_commands(self) -> Sequence[AdminCommand]:
        """None."""
        return ()

    async def demo(self, rt: Runtime, members: Sequence[Member]) -> str:
        """Nothing to set up."""
        return ""

    def services(self, rt: Runtime) -> Mapping[ServiceKey[Any], object]:
        """``WebhookAdmin``: the team admin's endpoint management (the portal uses it)."""
        from gateway.services import WEBHOOK_ADMIN
        from webhooks.admin import Admin

        return {WEBHOOK_ADMIN: Admin(rt)}


EXTENSION = WebhooksExtension()
