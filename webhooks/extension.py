"""The webhooks as a gateway extension (entry point ``gateway.extensions: webhooks``).

The gateway core finds this object through the entry point and never imports the
package (``gateway.extensions``): ``create_app`` serves :meth:`routes`, the OpenAPI
document merges :meth:`openapi`, and the job worker (``gateway serve`` and ``gateway
worker``) runs :meth:`run`, the delivery engine (deliveries have a queue of their own, so
:meth:`job_handlers` declares no job kind). The imports wait for the first call, so
loading the entry point costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.routing import BaseRoute

from gateway.extensions import Extension, Host
from gateway.models import JobHandler


class WebhooksExtension:
    """Routes, OpenAPI part and delivery engine of the webhooks."""

    name = "webhooks"

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


EXTENSION: Extension = WebhooksExtension()
