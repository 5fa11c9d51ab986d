"""The webhooks as a gateway extension (entry point ``gateway.extensions: webhooks``).

The gateway core finds this object through the entry point and never imports the
package: ``gateway.config`` parses the ``[webhooks]`` section with
:meth:`~WebhooksExtension.parse_settings`, ``gateway.process.open_runtime`` opens the
storage role of :meth:`~WebhooksExtension.storage`, ``create_app`` serves
:meth:`~WebhooksExtension.routes`, the OpenAPI document merges
:meth:`~WebhooksExtension.openapi`, and the job worker (``gateway serve`` and ``gateway
worker``) runs :meth:`~WebhooksExtension.run`, the delivery engine (deliveries have a queue
of their own, so :meth:`~WebhooksExtension.job_handlers` declares no job kind). The other
imports wait for the first call, so loading the entry point (which the configuration
does) costs little.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from webhooks import settings

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand, Extension, Host
    from gateway.models import JobHandler, Member
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

    def job_handlers(self, host: Host) -> Mapping[str, JobHandler]:
        """None: deliveries are leased from their own queue by :meth:`run`."""
        return {}

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """Fan events out and deliver them until ``stop`` is set."""
        from webhooks.delivery import Engine

        await Engine(host).run(stop)

    def admin_commands(self) -> Sequence[AdminCommand]:
        """None."""
        return ()

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """Nothing to set up."""
        return ""

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """``WebhookAdmin``: the team admin's endpoint management (the portal uses it)."""
        from gateway.services import WEBHOOK_ADMIN
        from webhooks.admin import Admin

        return {WEBHOOK_ADMIN: Admin(host)}


EXTENSION: Extension = WebhooksExtension()
