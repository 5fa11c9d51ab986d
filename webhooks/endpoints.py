"""Webhook endpoints: what a team may register, and how the API shows it.

An endpoint has a ``url`` (checked by ``targets.py``), an ``events`` filter (event types
from ``gateway/events.py``; ``[]`` or ``["*"]`` means every
type), ``enabled``, an optional ``description`` and a signing secret that the API shows
only when it is made (creation, rotation). A team has at most
:data:`MAX_ENDPOINTS_PER_TEAM` endpoints. An endpoint receives the events that happen
from its creation on, of its own team only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gateway import events
from gateway.errors import ValidationError
from gateway.models import Event, iso
from webhooks.models import WebhookEndpoint
from webhooks.targets import (
    Resolver,
    Target,
    TargetError,
    TargetRefused,
    parse_target,
    resolve_checked,
)

KNOWN_EVENTS = (
    events.MESSAGE_CREATED,
    events.MESSAGE_RECEIVED,
    events.MESSAGE_STATUS,
    events.QUOTA_THRESHOLD,
    events.FORWARD_SENT,
    events.FORWARD_FAILED,
    events.FAX_PAGE,
)
MAX_ENDPOINTS_PER_TEAM = 20
MAX_DESCRIPTION = 256
FIELDS = ("url", "events", "enabled", "description")  # what a team may set


def parse_events(value: list[str]) -> list[str]:
    """The events filter in its stored form: known types, no repeats, ``[]`` for all."""
    out: list[str] = []
    for i, kind in enumerate(value):
        if kind == "*":
            continue
        if kind not in KNOWN_EVENTS:
            raise unknown_event(kind, i)
        if kind not in out:
            out.append(kind)
    return [] if "*" in value else out


def unknown_event(kind: Any, index: int) -> ValidationError:
    """The refusal of ``events[index]``, which is no known event type."""
    return ValidationError(
        f"unknown event type {kind!r}; the known types are "
        f'{", ".join(KNOWN_EVENTS)} (or "*" for all)',
        field=f"events[{index}]",
        known_events=list(KNOWN_EVENTS),
    )


async def check_url(url: str, allow_private: bool, resolver: Resolver) -> Target:
    """The URL as a target, refused (``ValidationError`` on ``url``) when its form is wrong
    or, unless ``allow_private``, when its host resolves to an address that is not
    public (code ``url_not_allowed``)."""
    try:
        target = parse_target(url)
    except TargetError as exc:
        raise ValidationError(f"'url' {exc}", field="url") from None
    if not allow_private:
        try:
            await resolve_checked(target, False, resolver)
        except TargetRefused as exc:
            raise ValidationError(
                f"'url' is not allowed: {exc}; webhooks go to public addresses only",
                field="url",
                code="url_not_allowed",
            ) from None
    return target


def matches(endpoint: WebhookEndpoint, event: Event) -> bool:
    """Whether ``event`` goes to ``endpoint`` (enabled, same team, filter, not older)."""
    return (
        endpoint.enabled
        and endpoint.team_id == event.team_id
        and (not endpoint.events or event.type in endpoint.events)
        and event.created_at >= endpoint.created_at
    )


def view(endpoint: WebhookEndpoint, now: datetime) -> dict[str, Any]:
    """The endpoint as the API shows it (never its secrets)."""
    rotating = (
        endpoint.old_secret is not None
        and endpoint.old_secret_until is not None
        and now < endpoint.old_secret_until
    )
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": iso(endpoint.failing_since) if endpoint.failing_since else None,
        "previous_secret_expires_at": (
            iso(endpoint.old_secret_until)
            if rotating and endpoint.old_secret_until is not None
            else None
        ),
        "created_at": iso(endpoint.created_at),
        "updated_at": iso(endpoint.updated_at),
    }
