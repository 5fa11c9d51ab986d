"""The webhooks' data: endpoints, deliveries and how an attempt ended.

The storage role (``storage.py``) keeps them; the API (``api.py``) and the delivery engine
(``delivery.py``) build and read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.models import iso, parse_iso

DELIVERY_PENDING = "pending"  # waiting for an attempt (scheduled, held back, or in flight)
DELIVERY_SUCCEEDED = "succeeded"
DELIVERY_FAILED = "failed"  # every attempt of the retry schedule failed
WEBHOOK_LOG_KEEP = 50  # attempt records kept per delivery (the newest)


@dataclass(slots=True)
class WebhookEndpoint:
    """A team's webhook endpoint: where events go, which types, and the signing secrets.

    ``version`` grows by one with every change (``WebhookStore.update_endpoint`` compares it).
    ``failing_since`` is kept by the store beside the document and only changed by
    ``WebhookStore.finish_delivery`` (and reset by an update with ``reset_failing``): the time of
    the first failed attempt since the last successful one.
    """

    id: str
    team_id: str
    url: str
    events: list[str]  # event types delivered; [] = every type
    enabled: bool
    secret: str  # whsec_…: signs every delivery
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    disabled_reason: str | None = None  # why the gateway disabled it (None: it did not)
    old_secret: str | None = None  # the secret before the last rotation …
    old_secret_until: datetime | None = None  # … which also signs until then
    version: int = 1
    failing_since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store (``failing_since`` is stored beside the document)."""
        return {
            "id": self.id,
            "team_id": self.team_id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "secret": self.secret,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "description": self.description,
            "disabled_reason": self.disabled_reason,
            "old_secret": self.old_secret,
            "old_secret_until": iso(self.old_secret_until) if self.old_secret_until else None,
            "version": self.version,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], failing_since: datetime | None = None
    ) -> WebhookEndpoint:
        """Load what :meth:`to_dict` wrote."""
        data = dict(data)
        for name in ("created_at", "updated_at", "old_secret_until"):
            if data.get(name) is not None:
                data[name] = parse_iso(data[name])
        return cls(**data, failing_since=failing_since)


@dataclass(slots=True)
class Delivery:
    """One event for one endpoint: its attempts, status and place in its lane.

    ``id`` is the ``webhook-id`` the receiver sees: derived from the event and the
    endpoint, the same on every attempt, retry and replay. Deliveries of one ``lane``
    (an endpoint and a conversation) are attempted one at a time in ``seq`` order: only
    the lane's oldest pending delivery is ever due; ``lane == id`` means no lane.
    ``due_at``: when the next attempt may start, or while ``token`` holds a lease, when
    the lease expires; None for a delivery held back in its lane and once final.
    """

    id: str
    endpoint_id: str
    team_id: str
    event_id: str
    event_type: str
    seq: int  # the event's seq
    lane: str
    created_at: datetime
    status: str = DELIVERY_PENDING
    attempts: int = 0  # attempts started in this series (a retry or replay starts a new one)
    due_at: datetime | None = None
    token: str | None = None  # the lease of the attempt in flight
    last_attempt: dict[str, Any] | None = None
    updated_at: datetime | None = None
    log: list[dict[str, Any]] = field(default_factory=list)  # get_delivery only

    def static_doc(self) -> dict[str, Any]:
        """The fields that never change, as stored."""
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "team_id": self.team_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "seq": self.seq,
            "created_at": iso(self.created_at),
        }

    @classmethod
    def from_static(cls, doc: dict[str, Any], lane: str) -> Delivery:
        """A delivery from :meth:`static_doc` (the backend fills in the rest)."""
        return cls(
            doc["id"],
            doc["endpoint_id"],
            doc["team_id"],
            doc["event_id"],
            doc["event_type"],
            doc["seq"],
            lane,
            parse_iso(doc["created_at"]),
        )


@dataclass(slots=True, frozen=True)
class DeliveryOutcome:
    """How an attempt ended, for ``WebhookStore.finish_delivery``."""

    status: str  # succeeded | failed (final) | pending (again at ``retry_at``)
    attempt: dict[str, Any]  # the attempt's record: appended to the log, shown as last
    retry_at: datetime | None = None
    # True: the endpoint answered 2xx (its failing_since is cleared); False: the attempt
    # failed (failing_since is set unless it already is); None: leave it.
    endpoint_ok: bool | None = None


@dataclass(slots=True, frozen=True)
class FinishResult:
    """What ``WebhookStore.finish_delivery`` did besides recording the attempt."""

    failing_since: datetime | None  # the endpoint's, after this attempt
    promoted: str | None  # the delivery of the lane that is due now that this one is final
