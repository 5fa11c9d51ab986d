"""Services: what one extension offers the others through the core, so that neither
imports the other (public: extensions import this module).

The core defines each service as a Protocol here with a typed key (a
:class:`ServiceKey`); an extension that provides one returns it from
``Extension.services(rt)`` under its key; a user finds it with
``gateway.extensions.service(rt, KEY)`` (None when no installed extension offers it, and
the user does without).

* :class:`WebhookAdmin` — a team's webhook endpoints and their deliveries, provided by the
  webhooks extension and used by the portal's team administration.
* :class:`DocumentPreview` — page count and a page-1 image of a document about to be
  faxed, provided by the fax package and used by the portal's composer.
* :class:`ChannelJobs` — the job kinds a channel's extension adds to the core's message
  paths (the fax package's conversion before a send, its PDF and mail after a receipt);
  used by ``gateway.outbound`` and ``gateway.inbound`` through
  ``gateway.extensions.preparation_kind`` / ``follow_up_kinds``.

Every view is the plain JSON-able dict the REST API shows for the same object; errors
are the gateway's (``gateway.errors``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

S = TypeVar("S")


class ServiceKey(Generic[S]):
    """The name of a service ``S`` (a Protocol below), typed for lookups."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"ServiceKey({self.name!r})"


class WebhookAdmin(Protocol):
    """A team admin's operations on the team's webhook endpoints (``team_id`` scopes
    everything: another team's endpoint is ``NotFound``)."""

    def event_types(self) -> Sequence[str]:
        """The event types an endpoint can subscribe to."""
        ...

    async def list_endpoints(self, team_id: str) -> list[dict[str, Any]]:
        """The team's endpoints, oldest first."""
        ...

    async def create_endpoint(
        self, team_id: str, url: str, events: Sequence[str], description: str | None
    ) -> tuple[dict[str, Any], str]:
        """A new endpoint (URL checked as the API checks it); its view and its signing
        secret, which is shown this once."""
        ...

    async def set_enabled(self, team_id: str, endpoint_id: str, enabled: bool) -> dict[str, Any]:
        """Enable (its failure streak forgotten) or disable an endpoint."""
        ...

    async def delete_endpoint(self, team_id: str, endpoint_id: str) -> None:
        """Delete an endpoint and its delivery log."""
        ...

    async def list_deliveries(
        self, team_id: str, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The endpoint's deliveries, newest event first, and the next page's cursor."""
        ...

    async def retry_delivery(
        self, team_id: str, endpoint_id: str, delivery_id: str
    ) -> dict[str, Any]:
        """Attempt a delivery again now (``Conflict`` when the endpoint is disabled or the
        delivery waits behind an earlier one of its conversation)."""
        ...


@dataclass(frozen=True, slots=True)
class PagePreview:
    """What a document will fax as: its page count and page 1 as a PNG."""

    pages: int
    thumbnail_png: bytes


class DocumentPreview(Protocol):
    """Renders a document as the fax channel will send it."""

    async def preview(self, data: bytes, content_type: str) -> PagePreview:
        """Page count and page-1 thumbnail; ``ValidationError`` saying why a document
        cannot be faxed (encrypted, broken, too many pages …)."""
        ...


class ChannelJobs(Protocol):
    """Job kinds an extension adds around the core's messages of a channel. Each job's
    payload is ``{"message_id": …}``; each is written in the same store transaction as
    the message it is about, so none is lost."""

    def preparation_kind(self, channel: str) -> str | None:
        """The job kind that prepares an accepted outbound message of ``channel`` (e.g.
        converts documents) instead of the ``send`` job; it moves the message to
        ``queued`` and enqueues ``send`` itself (or fails it, giving the units back).
        None: the channel sends at once."""
        ...

    def follow_up_kinds(self, channel: str) -> Sequence[str]:
        """The job kinds run after an inbound message of ``channel`` is stored (e.g. a
        received fax converted to PDF and mailed); () for none."""
        ...


WEBHOOK_ADMIN: ServiceKey[WebhookAdmin] = ServiceKey("webhook_admin")
DOCUMENT_PREVIEW: ServiceKey[DocumentPreview] = ServiceKey("document_preview")
CHANNEL_JOBS: ServiceKey[ChannelJobs] = ServiceKey("channel_jobs")
