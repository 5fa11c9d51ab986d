"""The webhook endpoint commands: create and change an endpoint, replay its events.

They are the extension's own commands, built on the core's ``gateway.commands.Command``
as the core builds its own; the core knows nothing of them. Their shape is checked here
(and refused in the words the API has always used); ``endpoints.py`` checks the event
types and the URL's target.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from msgspec import UNSET, Meta, UnsetType

from gateway.commands import Command, Fault
from gateway.errors import GatewayError, ValidationError
from webhooks.endpoints import FIELDS, MAX_DESCRIPTION, unknown_event
from webhooks.targets import MAX_URL

Url = Annotated[
    str,
    Meta(
        description="http:// or https://, no user info or fragment; its host must resolve "
        "to public addresses only.",
        examples=["https://hooks.example.com/gateway"],
        extra_json_schema={"maxLength": MAX_URL},
    ),
]
EventType = Annotated[
    str,
    Meta(
        extra_json_schema={
            "oneOf": [{"$ref": "#/components/schemas/WebhookEventType"}, {"const": "*"}]
        }
    ),
]
Events = Annotated[
    list[EventType],
    Meta(description='Event types to send; `[]` or `["*"]`: every type (the default).'),
]
Description = Annotated[str, Meta(max_length=MAX_DESCRIPTION)]


class _EndpointCommand(Command, kw_only=True):
    """What creating and changing an endpoint share: their refusals."""

    __not_object__: ClassVar[str] = "the body must be a JSON object"

    @classmethod
    def refuse(cls, fault: Fault, body: Any) -> GatewayError:
        """The refusals ``endpoints.parse_fields`` has always answered."""
        top = fault.path[0] if fault.path else None
        if fault.kind == "unknown":
            name = fault.names[0]
            return ValidationError(
                f"unknown field {name!r} (the fields are {', '.join(FIELDS)})", field=name
            )
        if fault.kind == "missing" and top == "url":
            return ValidationError("'url' is required", field="url")
        if top == "url":
            return ValidationError("'url' must be a string", field="url")
        if top == "events" and len(fault.path) > 1:
            return unknown_event(fault.value(body), int(fault.path[1]))
        if top == "events":
            return ValidationError("'events' must be a list of event types", field="events")
        if top == "enabled":
            return ValidationError("'enabled' must be true or false", field="enabled")
        if top == "description":
            return ValidationError(
                f"'description' must be a string of at most {MAX_DESCRIPTION} characters, "
                "or null",
                field="description",
            )
        return super().refuse(fault, body)


class WebhookEndpointCreate(_EndpointCommand, kw_only=True):
    """A new endpoint: its URL, and which events it takes."""

    url: Url
    events: Events = []
    enabled: Annotated[bool, Meta(description="Default true.")] = True
    description: Description | None = None


class WebhookEndpointUpdate(_EndpointCommand, kw_only=True):
    """The fields to change. `enabled: true` on a disabled endpoint also clears
    `disabled_reason` and `failing_since`."""

    url: Url | UnsetType = UNSET
    events: Events | UnsetType = UNSET
    enabled: Annotated[bool | UnsetType, Meta(description="Default true.")] = UNSET
    description: Description | UnsetType | None = UNSET


class ReplayRequest(Command, kw_only=True):
    """Send an endpoint's events of ``[since, until]`` again (``until``: now)."""

    since: datetime
    until: datetime | None = None
