"""The connector seam: protocol, registry and the error tree shared by every carrier.

A connector turns one carrier protocol (SMPP, an HTTP carrier API, the WhatsApp Cloud
API, T.38 fax) into four calls: ``start``, ``send``, ``routes`` (its webhook endpoints,
mounted under ``/hooks/{connector_id}``) and ``aclose``; ``job_handlers`` declares the
durable job kinds it runs. Inbound messages and delivery reports go to the
``InboundSink`` it is given (``gateway/inbound.py``).

Errors, drawn once and mapped by each connector from its carrier's codes in one table::

    ConnectorError                (code, carrier_code)
    ├── PermanentError            the message can never go out as it is → failed
    ├── RetryableError            try again, not before ``retry_after`` seconds (exactly
    │                             then, using up no job attempt, when ``scheduled``)
    │   └── AuthError             credentials/permissions: connector unhealthy, message
    │                             stays queued (no attempt is used up)
    └── NotReadyError             raised by ``start()``: carrier unreachable for now

Each module ends with ``register("kind", Factory)``; a kind is also found through the
``gateway.connectors`` entry-point group, so the gateway never imports a carrier by name.
Carrier simulators that ``gateway demo`` runs (:class:`DemoCarrier`) are found the same
way, through the ``gateway.simulators`` group.

Public: every connector, and the core, import this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from gateway.coordination import Coordination, LocalCoordination

if TYPE_CHECKING:
    import httpx
    from starlette.routing import BaseRoute

    from gateway.blobs import BlobStore
    from gateway.clock import Clock
    from gateway.config import ConnectorConfig
    from gateway.models import JobHandler, Message


class ErrorCode:
    """Normalized error codes stored on failed messages (the carrier's raw code beside)."""

    INVALID_NUMBER = "invalid_number"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    BLOCKED = "blocked"
    THROTTLED = "throttled"
    AUTH_FAILED = "auth_failed"
    WINDOW_CLOSED = "whatsapp_window_closed"
    CONTENT_INVALID = "content_invalid"
    EXPIRED = "expired"
    CARRIER_ERROR = "carrier_error"
    TIMEOUT = "timeout"
    NO_CONNECTOR = "channel_unavailable"
    UNKNOWN = "unknown"


class ConnectorError(Exception):
    """Base of every carrier-side error."""

    retryable = False

    def __init__(
        self, message: str, *, code: str = ErrorCode.CARRIER_ERROR, carrier_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.carrier_code = carrier_code

    def as_error(self) -> dict[str, Any]:
        """The normalized error as stored on the message."""
        return {
            "code": self.code,
            "message": self.message,
            "carrier_code": self.carrier_code,
            "retryable": self.retryable,
        }


class PermanentError(ConnectorError):
    """The carrier will never accept this message as it is."""


class RetryableError(ConnectorError):
    """Try again later; ``retry_after`` (seconds) is the carrier's hint, if any.

    ``scheduled``: the connector runs its own retry schedule and limits (a fax server's:
    busy after 3 min, no answer after 5, at most 12 dials) and gives up itself with a
    ``PermanentError``; the dispatcher then waits exactly ``retry_after`` and counts no
    attempt of the job.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        code: str = ErrorCode.CARRIER_ERROR,
        carrier_code: str | None = None,
        scheduled: bool = False,
    ) -> None:
        super().__init__(message, code=code, carrier_code=carrier_code)
        self.retry_after = retry_after
        self.scheduled = scheduled


class AuthError(RetryableError):
    """Credentials or permissions were refused: the operator must act; messages wait."""

    def __init__(self, message: str, *, carrier_code: str | None = None) -> None:
        super().__init__(message, code=ErrorCode.AUTH_FAILED, carrier_code=carrier_code)


class NotReadyError(ConnectorError):
    """``start()`` could not reach the carrier yet; the gateway retries."""

    retryable = True


@dataclass(slots=True)
class OutboundAttachment:
    """An attachment handed to a connector: bytes are read from ``path`` when needed."""

    id: str
    path: str
    content_type: str
    size: int
    sha256: str
    filename: str | None = None


@dataclass(slots=True)
class OutboundMessage:
    """What a connector needs to send one message."""

    id: str
    channel: str
    from_: str
    to: str
    text: str | None
    attachments: list[OutboundAttachment] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SendResult:
    """The carrier accepted the message: its id, and what else it told."""

    carrier_id: str
    segments: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Every part's carrier id, in order, when the carrier gave one id per part (SMPP
    # submits one submit_sm per segment); delivery reports may name any of them.
    part_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class InboundAttachment:
    """Media that arrived with an inbound message (already downloaded) or a reference."""

    content_type: str
    data: bytes | None = None
    filename: str | None = None
    reference: str | None = None  # the carrier's media id, fetched later by a job


@dataclass(slots=True)
class InboundMessage:
    """A message a carrier delivered to one of our numbers, normalized."""

    connector_id: str
    channel: str
    carrier_id: str
    from_: str
    to: str
    text: str | None
    received_at: datetime
    attachments: list[InboundAttachment] = field(default_factory=list)
    segments: int = 1
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StatusReport:
    """A delivery report: the carrier's id of an outbound message and its new status."""

    connector_id: str
    carrier_id: str
    status: str
    at: datetime
    error: dict[str, Any] | None = None


class InboundSink(Protocol):
    """Where connectors hand what the carrier sent them (``gateway/inbound.py``)."""

    async def inbound(self, message: InboundMessage) -> Message | None:
        """Store an inbound message (deduped); None when no member owns the number."""
        ...

    async def status(self, report: StatusReport) -> Message | None:
        """Apply a delivery report; None when the carrier id is unknown."""
        ...


@dataclass(slots=True)
class Health:
    """A connector's own view of whether it can send now.

    ``retry_after`` (when not ``ok``): seconds after which a send is worth trying again,
    e.g. until the next reconnect attempt of a connection that dropped. None means
    unknown or waiting for an operator (refused credentials): the gateway then parks
    the connector's sends for a minute.
    """

    ok: bool
    detail: str = "ok"
    retry_after: float | None = None


class MessageProgress(Protocol):
    """Where a long send reports how far it got (the fax's pages), implemented by the core.

    ``progress`` merges ``meta`` into the message's meta (a dict value is merged one
    level deep: ``{"fax": {"pages_sent": 2}}`` keeps the other ``fax`` keys) and, when
    ``event`` is given, appends that event with ``data`` and the message's id, member
    and conversation.
    """

    async def progress(
        self,
        message_id: str,
        meta: Mapping[str, Any],
        event: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Record progress of an outbound message."""
        ...


class InboundScreen(Protocol):
    """Whether a call/message to one of our numbers would be taken, before taking it
    (a fax call is answered or refused before its pages exist). Implemented by the core."""

    async def screen(self, channel: str, to: str, from_: str) -> str:
        """``ok``; ``unknown`` (no member owns ``to`` on ``channel``); ``blocked`` (the
        team's inbound policy refuses ``from_``)."""
        ...


@dataclass(slots=True)
class ConnectorContext:
    """What the gateway gives every connector (``progress`` and ``screen``: None where a
    test or tool runs a connector without the core)."""

    http: httpx.AsyncClient
    sink: InboundSink
    clock: Clock
    blobs: BlobStore
    public_url: str
    progress: MessageProgress | None = None
    screen: InboundScreen | None = None
    # What every process sharing the store sees alike: carrier session slots, send rates
    # and backoffs, inbound part sets (``gateway/coordination.py``). The runtime passes
    # its store's; the default is this process's memory (one process, tests).
    shared: Coordination = field(default_factory=LocalCoordination)
    # Whether this process runs send jobs. False: an API-only process (``gateway serve
    # --no-workers``); a connector holding carrier sessions that count against a limit
    # (SMPP binds) leaves them to the processes that send.
    sends: bool = True


class Connector(Protocol):
    """One carrier protocol behind the four calls of the seam."""

    id: str
    kind: str
    channels: frozenset[str]
    numbers: frozenset[str] | None

    async def start(self) -> None:
        """Connect / bind / check credentials; raise ``NotReadyError`` or ``AuthError``."""
        ...

    async def send(self, message: OutboundMessage) -> SendResult:
        """Hand one message to the carrier; raise a ``ConnectorError`` when it refuses."""
        ...

    def routes(self) -> Sequence[BaseRoute]:
        """Webhook routes, mounted under ``/hooks/{id}``."""
        ...

    def health(self) -> Health:
        """Whether the connector can send now (shown on ``/readyz``)."""
        ...

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """The durable job kinds this connector runs (slow work it handed to the sink's
        ``defer``), each with a bound method as handler; {} for none. A kind
        several connectors declare goes to the one its payload's ``connector_id`` names.
        While no running connector declares a kind, its jobs wait in the queue."""
        ...

    async def aclose(self) -> None:
        """Disconnect and stop background tasks."""
        ...


ConnectorFactory = Callable[["ConnectorConfig", ConnectorContext], Connector]
_registry: dict[str, ConnectorFactory] = {}


def register(kind: str, factory: ConnectorFactory) -> None:
    """Make ``kind`` available to ``[[connectors]]`` tables."""
    _registry[kind] = factory


def factory_for(kind: str) -> ConnectorFactory | None:
    """The factory of ``kind``: registered, or found through the entry-point group."""
    if kind not in _registry:
        for ep in entry_points(group="gateway.connectors"):
            if ep.name == kind:
                register(kind, ep.load())
    return _registry.get(kind)


def known_kinds() -> list[str]:
    """Every kind that can be created."""
    names = set(_registry) | {ep.name for ep in entry_points(group="gateway.connectors")}
    return sorted(names)


def create(config: ConnectorConfig, context: ConnectorContext) -> Connector:
    """Build the connector a ``[[connectors]]`` table describes."""
    factory = factory_for(config.kind)
    if factory is None:
        from gateway.errors import ConfigError

        kinds = ", ".join(known_kinds()) or "none installed"
        raise ConfigError(
            f"connectors[{config.id}].kind: unknown connector kind {config.kind!r} (known: {kinds})"
        )
    return factory(config, context)


# -- demo carriers: simulators that ``gateway demo`` runs beside the gateway --------------
SIMULATOR_GROUP = "gateway.simulators"


@dataclass(frozen=True, slots=True)
class DemoNumber:
    """A number of a demo member and the channels the member uses it for."""

    number: str
    channels: frozenset[str]


class DemoCarrier(Protocol):
    """A carrier simulator that ``gateway demo`` starts on a free loopback port (a factory
    in the ``gateway.simulators`` entry-point group, called once per demo)."""

    async def start(self, public_url: str, numbers: Sequence[DemoNumber]) -> ConnectorConfig:
        """Start the simulator for the demo's ``numbers`` (the gateway will be served at
        ``public_url``); returns the ``[[connectors]]`` table of a connector reaching it."""
        ...

    def banner(self) -> str:
        """How to use the simulated carrier from a shell (printed by the demo)."""
        ...

    async def stop(self) -> None:
        """Stop the simulator."""
        ...


def demo_carriers() -> list[DemoCarrier]:
    """A new instance of every installed demo carrier, by entry-point name."""
    found = sorted(entry_points(group=SIMULATOR_GROUP), key=lambda ep: ep.name)
    return [ep.load()() for ep in found]
