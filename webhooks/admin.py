"""``WebhookAdmin`` (``gateway/services.py``): the team admin's endpoint management as a
service, for front doors that must not import this package (the portal).

The same rules as the REST routes (``api.py``): the form checked as the typed command
``WebhookEndpointCreate`` (refused in the API's words), URLs checked by
``endpoints.check_url``, at most ``MAX_ENDPOINTS_PER_TEAM`` per team, views as the API
shows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.commands import convert
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.extensions import Host
from gateway.ids import new_id
from webhooks import api, endpoints, signing
from webhooks.commands import WebhookEndpointCreate
from webhooks.models import DELIVERY_PENDING, WebhookEndpoint
from webhooks.settings import webhook_settings
from webhooks.storage import WEBHOOK_STORE, WebhookStore


class Admin:
    """``WebhookAdmin`` on one runtime."""

    def __init__(self, rt: Host) -> None:
        self.rt = rt

    @property
    def _hooks(self) -> WebhookStore:
        return self.rt.role(WEBHOOK_STORE)

    async def _endpoint(self, team_id: str, endpoint_id: str) -> WebhookEndpoint:
        endpoint = await self._hooks.get_endpoint(endpoint_id)
        if endpoint is None or endpoint.team_id != team_id:
            raise NotFound("webhook endpoint not found")
        return endpoint

    def event_types(self) -> Sequence[str]:
        """The types an endpoint can subscribe to."""
        return endpoints.KNOWN_EVENTS

    async def list_endpoints(self, team_id: str) -> list[dict[str, Any]]:
        """The team's endpoints, oldest first."""
        now = self.rt.clock.now()
        return [endpoints.view(e, now) for e in await self._hooks.list_endpoints(team_id)]

    async def create_endpoint(
        self, team_id: str, url: str, events: Sequence[str], description: str | None
    ) -> tuple[dict[str, Any], str]:
        """A new endpoint; its view and its secret (shown once)."""
        body: dict[str, Any] = {"url": url, "events": list(events)}
        if description:
            body["description"] = description
        asked = convert(WebhookEndpointCreate, body)
        events = endpoints.parse_events(asked.events)
        allow = webhook_settings(self.rt.settings).allow_private_targets
        await endpoints.check_url(asked.url, allow, api.RESOLVER)
        now = self.rt.clock.now()
        endpoint = WebhookEndpoint(
            id=new_id("whep"),
            team_id=team_id,
            url=asked.url,
            events=events,
            enabled=asked.enabled,
            secret=signing.new_secret(),
            created_at=now,
            updated_at=now,
            description=asked.description or None,
        )
        await self._hooks.create_endpoint(endpoint, endpoints.MAX_ENDPOINTS_PER_TEAM)
        return endpoints.view(endpoint, now), endpoint.secret

    async def set_enabled(self, team_id: str, endpoint_id: str, enabled: bool) -> dict[str, Any]:
        """Enable (the failure streak starts over) or disable."""
        endpoint = await self._endpoint(team_id, endpoint_id)
        reset = enabled and not endpoint.enabled
        endpoint.enabled = enabled
        endpoint.disabled_reason = None
        endpoint.version += 1
        endpoint.updated_at = self.rt.clock.now()
        if not await self._hooks.update_endpoint(endpoint, reset):
            raise Conflict("the endpoint was changed at the same time; read it and try again")
        if reset:
            endpoint.failing_since = None
        return endpoints.view(endpoint, self.rt.clock.now())

    async def delete_endpoint(self, team_id: str, endpoint_id: str) -> None:
        """Delete the endpoint and its deliveries."""
        endpoint = await self._endpoint(team_id, endpoint_id)
        await self._hooks.delete_endpoint(endpoint.id)

    async def list_deliveries(
        self, team_id: str, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the endpoint's deliveries, newest event first."""
        endpoint = await self._endpoint(team_id, endpoint_id)
        if status is not None and status not in api.DELIVERY_STATUSES:
            raise ValidationError(f"unknown delivery status {status!r}", field="status")
        if cursor is not None and not cursor.isdigit():
            cursor = None
        page = await self._hooks.list_deliveries(endpoint.id, status, cursor, limit)
        return [api.delivery_view(d) for d in page.items], page.next_cursor

    async def retry_delivery(
        self, team_id: str, endpoint_id: str, delivery_id: str
    ) -> dict[str, Any]:
        """Attempt the delivery again now."""
        endpoint = await self._endpoint(team_id, endpoint_id)
        found = await self._hooks.get_delivery(delivery_id)
        if found is None or found.endpoint_id != endpoint.id:
            raise NotFound("delivery not found")
        if not endpoint.enabled:
            raise Conflict("the endpoint is disabled; enable it first", code="endpoint_disabled")
        (after,) = await self._hooks.requeue_deliveries([found], self.rt.clock.now())
        if after.status == DELIVERY_PENDING and after.token is None and after.due_at is None:
            raise Conflict(
                "this delivery waits for an earlier event of the same conversation to this "
                "endpoint; it goes out once that one succeeded or failed",
                code="delivery_held_back",
            )
        return api.delivery_view(after)
