"""The webhooks as a gateway extension (entry point ``gateway.extensions: webhooks``).

The gateway core finds this object through the entry point and never imports the
package: ``create_app`` serves :meth:`routes`, the OpenAPI document merges
:meth:`openapi`, and ``Worker.run`` (``gateway serve`` and ``gateway worker``) runs
:meth:`run`, the delivery engine. The imports wait for the first call, so loading the
entry point costs nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute

from gateway.runtime import Runtime


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

    async def run(self, rt: Runtime, stop: asyncio.Event) -> None:
        """Fan events out and deliver them until ``stop`` is set."""
        from webhooks.delivery import Engine

        await Engine(rt).run(stop)


EXTENSION = WebhooksExtension()
