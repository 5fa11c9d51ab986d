"""The webhooks' storage role: endpoints, the fan-out cursor, deliveries and their logs.

``WebhookStore`` is what the API and the delivery engine need from storage; the webhooks
own it as a storage role of the gateway's store (``gateway/store/roles.py``), with one
implementation per backend: ``storage_sqlite.py`` (tables beside the core's, in the same
transactions) and ``storage_redis.py`` (keys beside the core's, Lua scripts on the same
pipelined lane). ``WebhooksExtension.storage()`` lists :data:`WEBHOOK_STORE`, so every
gateway process opens it with its store; code gets it with ``rt.role(WEBHOOK_STORE)``.
One contract suite (``tests/webhooks/test_storage_contract.py``) runs against both.

Rules both implementations keep: every method that says "atomically" does all of its
writes or none, also when several processes call it at once; times are the caller's
``now``. Lanes and leases are explained on :class:`~webhooks.models.Delivery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from gateway.store.base import Page
from gateway.store.roles import Role
from webhooks.models import Delivery, DeliveryOutcome, FinishResult, WebhookEndpoint

if TYPE_CHECKING:
    from gateway.store.redis_backend import RedisBackend
    from gateway.store.sqlite_engine import Engine


class WebhookStore(Protocol):
    """The webhooks' data in the gateway's store (see the module docstring)."""

    async def create_endpoint(self, endpoint: WebhookEndpoint, max_per_team: int) -> None:
        """Store a new endpoint atomically with its check: ``Conflict(code=
        "webhook_endpoint_limit")`` when the team already has ``max_per_team``."""
        ...

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint (with ``failing_since``), or None."""
        ...

    async def list_endpoints(self, team_id: str | None) -> list[WebhookEndpoint]:
        """The team's endpoints (None: every team's), oldest first."""
        ...

    async def update_endpoint(self, endpoint: WebhookEndpoint, reset_failing: bool = False) -> bool:
        """Replace the endpoint's document if the stored one has version
        ``endpoint.version - 1`` (compare-and-set); False otherwise (or when it is gone).
        ``reset_failing`` clears ``failing_since`` too."""
        ...

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its deliveries; False when it did not exist."""
        ...

    async def endpoints_version(self) -> int:
        """A number that changes whenever any endpoint is created, updated or deleted."""
        ...

    async def lease_fanout(self, owner: str, now: datetime, ttl: timedelta) -> int | None:
        """Take (or renew) the fan-out lease for ``owner`` until ``now + ttl`` and return the
        fan-out cursor (the last event seq turned into deliveries); None while another
        owner's lease runs."""
        ...

    async def fanout(
        self,
        after_seq: int,
        new_seq: int,
        endpoints_version: int,
        deliveries: Sequence[Delivery],
        token: str,
        lease_until: datetime,
        lease_limit: int,
        now: datetime,
    ) -> list[Delivery] | None:
        """Atomically: if the cursor is still ``after_seq`` and the endpoints version still
        ``endpoints_version``, move the cursor to ``new_seq`` and add ``deliveries`` (in
        ``seq`` order; one whose id exists is skipped). A new delivery that is the only
        pending one of its lane is due: the first ``lease_limit`` of those are leased to
        ``token`` until ``lease_until`` (attempt 1 started), the others due at ``now``.
        Returns the leased deliveries, or None (nothing written) when a check failed."""
        ...

    async def lease_deliveries(
        self, now: datetime, token: str, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` deliveries due at ``now`` (earliest first; an expired lease
        is due again) to ``token`` until ``lease_until``; each starts an attempt
        (``attempts`` += 1). Two callers never lease the same delivery at once."""
        ...

    async def finish_delivery(
        self, delivery: Delivery, outcome: DeliveryOutcome, now: datetime
    ) -> FinishResult | None:
        """Record the attempt of a leased delivery (None when ``delivery.token`` no longer
        holds the lease: nothing is written). Atomically: the status becomes the
        outcome's (pending: due at ``retry_at``), the attempt is logged, the endpoint's
        ``failing_since`` follows ``endpoint_ok``, and a final delivery leaves its lane,
        whose next pending delivery becomes due at ``now`` (``promoted``)."""
        ...

    async def requeue_deliveries(
        self, deliveries: Sequence[Delivery], now: datetime
    ) -> list[Delivery]:
        """Send deliveries again (retry now, replay), each atomically, in no lane: a missing
        one is added as pending (due now), a final one becomes pending again with a new
        series of attempts (due now), a pending one waiting for a retry is due now; a
        pending one in flight or held back in its lane is left alone. Returns them as
        stored afterwards."""
        ...

    async def prune_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` deliveries that finished (succeeded or failed) before
        ``before``, with their attempt logs, oldest first (retention); how many."""
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with its attempt log (oldest first), or None."""
        ...

    async def list_deliveries(
        self, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """The endpoint's deliveries (without logs), newest event first, optionally of
        one status."""
        ...


async def _open_sqlite(engine: Engine) -> WebhookStore:
    from webhooks.storage_sqlite import SqliteWebhookStore

    return await SqliteWebhookStore.open(engine)


async def _open_redis(backend: RedisBackend) -> WebhookStore:
    from webhooks.storage_redis import RedisWebhookStore

    return await RedisWebhookStore.open(backend)


# Imported lazily by the openers: a SQLite gateway never loads the Redis implementation.
WEBHOOK_STORE: Role[WebhookStore] = Role("webhooks", sqlite=_open_sqlite, redis=_open_redis)
