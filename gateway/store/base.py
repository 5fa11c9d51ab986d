"""The Store protocol: the one seam between the gateway and its storage backends.

Two backends implement it, ``sqlite.py`` (embedded default) and ``redis.py`` (shared by
many processes), and ONE contract suite (``tests/gateway/store/test_contract.py``) runs
against both. Nothing above the store knows which backend runs.

Rules every backend keeps:

* Objects are stored as the documents their ``to_dict()`` produces and read back with
  ``from_dict()``.
* Every method that says "atomically" either does all of its writes or none, also when
  several processes call it at once.
* Listing methods return newest first and page with an opaque ``cursor`` string; a page
  is followed by the next one with ``cursor`` = the value returned in ``Page.next_cursor``.
* Event ``seq`` numbers are assigned by the store, strictly increasing, never reused.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from gateway.errors import RateLimited
from gateway.models import (
    ApiKey,
    Attachment,
    Charge,
    Conversation,
    Event,
    Job,
    LedgerLine,
    Member,
    Message,
    StatusChange,
    Team,
    iso,
    parse_iso,
)

T = TypeVar("T")


@dataclass(slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


@dataclass(slots=True)
class IdemRecord:
    """A stored Idempotency-Key: the request's fingerprint and, once done, its response."""

    fingerprint: str
    status_code: int | None  # None while the first request is still being processed
    body: str | None


@dataclass(slots=True, frozen=True)
class MessageFilter:
    """Filters of ``list_messages``; None means "any"."""

    team_id: str
    member_id: str | None = None
    conversation_id: str | None = None
    channel: str | None = None
    direction: str | None = None
    status: str | None = None


@dataclass(slots=True)
class StatusUpdate:
    """A change to a message, applied by ``update_message``.

    ``status`` moves only forward (``models.can_transition``); other fields are written
    even when the status does not change. ``release`` gives the message's charged units
    back to the ledger (only once: the store clears ``charged_period``).
    """

    status: str | None = None
    carrier_id: str | None = None
    connector_id: str | None = None
    error: dict[str, object] | None = None
    release: bool = False
    detail: dict[str, object] | None = None
    meta: dict[str, object] | None = None
    # More carrier ids that name this message (one per part of a multi-part SMS).
    part_ids: tuple[str, ...] = ()
    # The carrier id of the part a delivery report is about (multi-part aggregation).
    part: str | None = None


@dataclass(slots=True, frozen=True)
class Reroute:
    """A message moved to another channel before it reached anyone, for
    ``reroute_message`` (the WhatsApp → SMS fallback): what it becomes on that channel."""

    from_channel: str  # the message must still be on this channel (a second reroute is a no-op)
    channel: str
    connector_id: str
    units: int
    segments: int
    encoding: str | None
    meta: dict[str, Any]  # merged into the message's meta
    detail: dict[str, Any] | None = None  # the history entry's detail


# -- outbound policy: send limits (gateway/policy.py builds them) ---------------------------
_WINDOW_NAMES = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}


class Limit(NamedTuple):  # a tuple: every send builds two
    """A sliding-window cap for ``submit_outbound``: at most ``cap`` accepted sends under
    ``key`` within any ``window_ms`` (a send at t counts while now < t + window).

    Backends keep an exact log of the accepted sends' times per key (one entry per send
    still in the window), so the (cap+1)-th send within a window is always refused,
    also when several processes send at once.
    """

    key: str  # what is counted, e.g. "dest:{team}:{number}"
    cap: int
    window_ms: int
    what: str  # for the refusal: "destination" or "member"
    subject: str  # the number or the member id

    def refusal(self, retry_ms: int) -> RateLimited:
        """The error of a send refused by this limit, free again in ``retry_ms``."""
        seconds = self.window_ms // 1000
        per = _WINDOW_NAMES.get(seconds) or f"{seconds} seconds"
        retry_after = max(1, -(-retry_ms // 1000))  # whole seconds, rounded up
        who = f"to {self.subject}" if self.what == "destination" else f"by {self.subject}"
        return RateLimited(
            f"the {self.what} limit of {self.cap} messages per {per} {who} is reached; "
            f"retry in {retry_after} s",
            limit=self.what,
            max=self.cap,
            window_seconds=seconds,
            retry_after=retry_after,
        )


# -- end outbound policy -------------------------------------------------------------------
# -- webhooks: endpoints and deliveries (the webhooks/ package builds and reads them) -------
DELIVERY_PENDING = "pending"  # waiting for an attempt (scheduled, held back, or in flight)
DELIVERY_SUCCEEDED = "succeeded"
DELIVERY_FAILED = "failed"  # every attempt of the retry schedule failed
WEBHOOK_LOG_KEEP = 50  # attempt records kept per delivery (the newest)


@dataclass(slots=True)
class WebhookEndpoint:
    """A team's webhook endpoint: where events go, which types, and the signing secrets.

    ``version`` grows by one with every change (``update_webhook_endpoint`` compares it).
    ``failing_since`` is kept by the store beside the document and only changed by
    ``finish_webhook_delivery`` (and reset by an update with ``reset_failing``): the time of
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
    log: list[dict[str, Any]] = field(default_factory=list)  # get_webhook_delivery only

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
    """How an attempt ended, for ``finish_webhook_delivery``."""

    status: str  # succeeded | failed (final) | pending (again at ``retry_at``)
    attempt: dict[str, Any]  # the attempt's record: appended to the log, shown as last
    retry_at: datetime | None = None
    # True: the endpoint answered 2xx (its failing_since is cleared); False: the attempt
    # failed (failing_since is set unless it already is); None: leave it.
    endpoint_ok: bool | None = None


@dataclass(slots=True, frozen=True)
class FinishResult:
    """What ``finish_webhook_delivery`` did besides recording the attempt."""

    failing_since: datetime | None  # the endpoint's, after this attempt
    promoted: str | None  # the delivery of the lane that is due now that this one is final


# -- end webhooks --------------------------------------------------------------------------
class Store(Protocol):
    """Persistent state of the gateway: directory, messages, ledger, jobs, events."""

    url: str

    async def open(self) -> None:
        """Connect and create the schema if needed."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise if the backend cannot answer (used by ``/readyz``)."""
        ...

    # -- directory -------------------------------------------------------------------
    async def create_team(self, team: Team) -> None:
        """Store a new team."""
        ...

    async def get_team(self, team_id: str) -> Team | None:
        """The team, or None."""
        ...

    async def list_teams(self) -> list[Team]:
        """Every team, oldest first."""
        ...

    async def create_member(self, member: Member, max_active: int) -> None:
        """Store a new member atomically with its checks.

        Raises ``Forbidden(code="plan_limit")`` when the team already has ``max_active``
        active members, ``Conflict(code="number_taken")`` when one of its numbers
        belongs to another member.
        """
        ...

    async def get_member(self, member_id: str) -> Member | None:
        """The member, or None."""
        ...

    async def list_members(self, team_id: str) -> list[Member]:
        """The team's members, oldest first."""
        ...

    async def member_by_number(self, number: str) -> Member | None:
        """The member who owns the E.164 ``number`` (mobile or fax), or None."""
        ...

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (only its hash)."""
        ...

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The API key whose secret hashes to ``key_hash``, or None."""
        ...

    # -- attachments -----------------------------------------------------------------
    async def put_attachment(self, attachment: Attachment) -> None:
        """Store attachment metadata (the bytes are in the blob store)."""
        ...

    async def get_attachment(self, attachment_id: str) -> Attachment | None:
        """The attachment, or None."""
        ...

    # -- settings documents ------------------------------------------------------------
    async def get_setting(self, scope: str) -> dict[str, Any] | None:
        """The settings document stored under ``scope`` (e.g. ``policy:team_…``), or None."""
        ...

    async def put_setting(self, scope: str, doc: dict[str, Any]) -> None:
        """Store (replace) the settings document under ``scope``."""
        ...

    # -- conversations ---------------------------------------------------------------
    async def conversation_for(
        self, team_id: str, member_id: str, member_number: str, remote_number: str, now: datetime
    ) -> Conversation:
        """The conversation of (team, member's number, remote number), created if new.

        Concurrent calls for the same triple return the same conversation.
        """
        ...

    async def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None."""
        ...

    async def find_conversation(
        self, team_id: str, member_number: str, remote_number: str
    ) -> Conversation | None:
        """The conversation of (team, member's number, remote number) as stored now, or
        None; never creates one (a preview or a refused send must leave no trace)."""
        ...

    async def list_conversations(
        self, team_id: str, member_id: str | None, cursor: str | None, limit: int
    ) -> Page[Conversation]:
        """Conversations by latest activity (``last_message_at``), newest first."""
        ...

    # -- messages --------------------------------------------------------------------
    async def submit_outbound(
        self,
        message: Message,
        charge: Charge | None,
        job: Job,
        events: list[Event],
        limits: Sequence[Limit] = (),
    ) -> list[Event]:
        """Atomically: book ``charge``, insert ``message``, enqueue ``job``, append events.

        ``limits`` are checked first (see ``Limit``): if one is full at
        ``message.created_at``, raise ``limit.refusal(...)`` (``RateLimited``) and write
        nothing; a send refused for any reason takes no slot, an accepted one takes one
        slot of every limit. Then the charge: if the team's overage cost in
        ``charge.period`` (sum over members and channels of units above ``included`` x
        price) would pass ``charge.credit_limit_micros``, raise ``CreditLimitExceeded``
        and write nothing.
        On success ``message.charged_period`` is set to ``charge.period``, the
        conversation's ``last_message_at`` becomes ``message.created_at``, and a
        ``quota.threshold`` event is appended for each of ``charge.thresholds`` (percent
        of ``included``) that the member's usage crosses with this charge. Returns every
        event appended (with ``seq``).
        """
        ...

    async def store_inbound(
        self,
        message: Message,
        dedupe_key: str,
        events: list[Event],
        jobs: Sequence[Job] = (),
    ) -> tuple[Message, bool]:
        """Atomically store an inbound message unless ``dedupe_key`` was seen.

        Returns (the stored message, True) or (the earlier message, False) for a
        duplicate, in which case nothing is written. On insert the conversation's
        ``last_message_at`` is updated, and for WhatsApp also ``last_inbound_whatsapp_at``
        (to the later of the stored value and ``message.created_at``), and ``jobs``
        (state ``ready``; e.g. its forwards) are enqueued in the same transaction.
        """
        ...

    async def get_message(self, message_id: str) -> Message | None:
        """The message, or None."""
        ...

    async def list_messages(
        self, flt: MessageFilter, cursor: str | None, limit: int
    ) -> Page[Message]:
        """Messages matching ``flt``, newest (highest id) first."""
        ...

    async def update_message(
        self, message_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Atomically apply ``update``; None when the message does not exist.

        Returns (message after the update, whether the status changed). A status change
        that ``can_transition`` refuses is ignored (the other fields still apply). On a
        status change a ``StatusChange`` is added to the history and a ``message.status``
        event with ``data`` = ``message.public()`` is appended. ``carrier_id`` also
        indexes the message for ``message_by_carrier_id``. ``release`` with a set
        ``charged_period`` gives ``message.units`` back to that period's ledger.
        """
        ...

    async def message_by_carrier_id(self, connector_id: str, carrier_id: str) -> Message | None:
        """The message a connector's carrier knows by ``carrier_id``, or None."""
        ...

    # -- the send and receipt paths: one write each ---------------------------------------
    async def complete_send(
        self, message_id: str, update: StatusUpdate, job_id: str, token: str, now: datetime
    ) -> tuple[Message, bool] | None:
        """Atomically: apply ``update`` as ``update_message`` does (same result; None when
        the message does not exist) and finish the job as ``ack_job`` does if ``token``
        still holds its lease (otherwise the job is left to its new holder). A send job's
        last write: no moment exists where the message is recorded sent but its job could
        still run again."""
        ...

    async def update_by_carrier_id(
        self, connector_id: str, carrier_id: str, update: StatusUpdate, now: datetime
    ) -> tuple[Message, bool] | None:
        """Atomically: find the message as ``message_by_carrier_id`` does (None when no
        message has that carrier id) and apply ``update`` as ``update_message`` does.
        A message that has moved to another connector since (``connector_id`` differs:
        the report is about an earlier attempt) is left alone: (message, False)."""
        ...

    # -- end of the send and receipt paths ------------------------------------------------

    async def reroute_message(
        self, message_id: str, reroute: Reroute, charge: Charge, job: Job | None, now: datetime
    ) -> tuple[Message, bool] | None:
        """Atomically move a message to another channel; None when it does not exist.

        Only while the message is on ``reroute.from_channel`` with a status of
        ``accepted``, ``queued``, ``sending`` or ``sent`` (else (message, False) and
        nothing is written, so a duplicate trigger never reroutes twice). Then: its
        charged units go back (as ``release``), ``charge`` is booked with the credit-limit
        check of ``submit_outbound`` (``CreditLimitExceeded`` writes nothing) and
        threshold events, channel, connector, units, segments and encoding are replaced,
        ``carrier_id`` is cleared, ``meta`` merged, and the status becomes ``queued`` —
        also from ``sent``: a reroute restarts delivery, the one move back the status
        makes — with its history entry and ``message.status`` event. ``job`` (if given)
        is enqueued. Earlier carrier ids keep naming the message (reports about the old
        attempt are recognized by their connector). Returns (message, True).
        """
        ...

    async def status_history(self, message_id: str) -> list[StatusChange]:
        """The message's status changes, oldest first."""
        ...

    # -- quota ledger ----------------------------------------------------------------
    async def ledger(self, team_id: str, period: str) -> tuple[list[LedgerLine], int]:
        """Units used per member and channel in ``period``, and the team's overage cost."""
        ...

    # -- jobs ------------------------------------------------------------------------
    # A worker leases only the kinds it has handlers for (``kinds``). A due job of
    # another kind is set aside ("parked") on the way, unchanged (its attempts and
    # state stay as they are): it no longer stands in front of the due jobs, and a worker
    # that handles its kind finds it among the parked ones. It counts as ``ready``.
    async def enqueue(self, job: Job) -> None:
        """Add a job (state ``ready``, due at ``job.run_at``)."""
        ...

    async def lease_job(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        *,
        kinds: Collection[str] | None = None,
    ) -> Job | None:
        """Lease the due job with the earliest ``run_at``, or a job whose lease expired,
        among ``kinds`` (None: every kind).

        Atomically: ``attempts`` += 1, state ``leased``, ``lease_until`` = now +
        visibility, a new ``token``. A job whose expired lease already used
        ``max_attempts`` goes ``dead`` instead (``last_error`` says so). Two callers
        never lease the same job at once.
        """
        ...

    async def lease_jobs(
        self,
        now: datetime,
        owner: str,
        visibility: timedelta,
        limit: int,
        *,
        kinds: Collection[str] | None = None,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs of ``kinds`` at once, each as ``lease_job``
        does, in the order ``lease_job`` would hand them out one by one (earliest
        ``run_at`` or expired lease first; a ready job before an expired lease on a tie).
        Exhausted expired leases are buried on the way and not returned; due jobs of
        other kinds are parked. [] when nothing is due (or ``limit`` < 1)."""
        ...

    async def renew_job(self, job_id: str, token: str, until: datetime) -> bool:
        """Extend a lease to ``until`` (a heartbeat); False when ``token`` no longer
        holds it (it expired and another worker leased the job, or the job is gone)."""
        ...

    async def ack_job(self, job_id: str, token: str) -> bool:
        """Finish a job (it is removed); False when ``token`` no longer holds the lease."""
        ...

    async def retry_job(
        self, job_id: str, token: str, run_at: datetime, error: str, refund: bool = False
    ) -> str | None:
        """Put a leased job back for ``run_at``; ``dead`` once attempts reached the max.

        ``refund`` gives the lease's attempt back (the job waited for something outside
        it, e.g. a connector without credentials, and must not die of that). Returns the
        new state (``ready`` or ``dead``), or None when ``token`` no longer
        holds the lease.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or None (acked jobs are gone)."""
        ...

    async def list_dead_jobs(self, limit: int) -> list[Job]:
        """Dead jobs, newest first; they are kept until an operator acts."""
        ...

    async def list_jobs(self, state: str, kind: str | None, limit: int) -> list[Job]:
        """Up to ``limit`` jobs in ``state`` (``ready``, parked ones included, or ``dead``),
        of ``kind`` if given: ready ones by due time, dead ones newest first."""
        ...

    async def revive_job(self, job_id: str, now: datetime) -> Job | None:
        """Give a dead job a new life: ``ready``, due ``now``, its attempts back to 0 (its
        ``last_error`` kept). None when no dead job has that id."""
        ...

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are ``ready`` (parked ones included), ``leased`` and ``dead``."""
        ...

    async def parked_job_counts(self) -> dict[str, int]:
        """Parked jobs by kind: due jobs that a worker set aside for want of a handler."""
        ...

    # -- events ----------------------------------------------------------------------
    async def append_events(self, events: list[Event]) -> list[Event]:
        """Append events; returns them with their ``seq``."""
        ...

    async def list_events(self, after_seq: int, limit: int) -> list[Event]:
        """Events with ``seq`` > ``after_seq``, oldest first."""
        ...

    # -- idempotency -----------------------------------------------------------------
    async def idem_claim(
        self, scope: str, key: str, fingerprint: str, now: datetime, ttl: timedelta
    ) -> IdemRecord | None:
        """Claim ``key`` in ``scope``: None if this caller now holds it, else the record.

        A claim that was never completed expires after ``ttl`` and can be claimed again.
        """
        ...

    async def idem_complete(
        self, scope: str, key: str, status_code: int, body: str, now: datetime
    ) -> None:
        """Store the response of the request that holds the claim."""
        ...

    async def idem_release(self, scope: str, key: str) -> None:
        """Drop a claim whose request failed without a response worth replaying."""
        ...

    # -- webhooks (see Delivery for lanes and leases) --------------------------------------
    async def create_webhook_endpoint(self, endpoint: WebhookEndpoint, max_per_team: int) -> None:
        """Store a new endpoint atomically with its check: ``Conflict(code=
        "webhook_endpoint_limit")`` when the team already has ``max_per_team``."""
        ...

    async def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        """The endpoint (with ``failing_since``), or None."""
        ...

    async def list_webhook_endpoints(self, team_id: str | None) -> list[WebhookEndpoint]:
        """The team's endpoints (None: every team's), oldest first."""
        ...

    async def update_webhook_endpoint(
        self, endpoint: WebhookEndpoint, reset_failing: bool = False
    ) -> bool:
        """Replace the endpoint's document if the stored one has version
        ``endpoint.version - 1`` (compare-and-set); False otherwise (or when it is gone).
        ``reset_failing`` clears ``failing_since`` too."""
        ...

    async def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Delete the endpoint and its deliveries; False when it did not exist."""
        ...

    async def webhook_endpoints_version(self) -> int:
        """A number that changes whenever any endpoint is created, updated or deleted."""
        ...

    async def lease_webhook_fanout(self, owner: str, now: datetime, ttl: timedelta) -> int | None:
        """Take (or renew) the fan-out lease for ``owner`` until ``now + ttl`` and return the
        fan-out cursor (the last event seq turned into deliveries); None while another
        owner's lease runs."""
        ...

    async def webhook_fanout(
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

    async def lease_webhook_deliveries(
        self, now: datetime, token: str, lease_until: datetime, limit: int
    ) -> list[Delivery]:
        """Lease up to ``limit`` deliveries due at ``now`` (earliest first; an expired lease
        is due again) to ``token`` until ``lease_until``; each starts an attempt
        (``attempts`` += 1). Two callers never lease the same delivery at once."""
        ...

    async def finish_webhook_delivery(
        self, delivery: Delivery, outcome: DeliveryOutcome, now: datetime
    ) -> FinishResult | None:
        """Record the attempt of a leased delivery (None when ``delivery.token`` no longer
        holds the lease: nothing is written). Atomically: the status becomes the
        outcome's (pending: due at ``retry_at``), the attempt is logged, the endpoint's
        ``failing_since`` follows ``endpoint_ok``, and a final delivery leaves its lane,
        whose next pending delivery becomes due at ``now`` (``promoted``)."""
        ...

    async def requeue_webhook_deliveries(
        self, deliveries: Sequence[Delivery], now: datetime
    ) -> list[Delivery]:
        """Send deliveries again (retry now, replay), each atomically, in no lane: a missing
        one is added as pending (due now), a final one becomes pending again with a new
        series of attempts (due now), a pending one waiting for a retry is due now; a
        pending one in flight or held back in its lane is left alone. Returns them as
        stored afterwards."""
        ...

    async def get_webhook_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery with its attempt log (oldest first), or None."""
        ...

    async def list_webhook_deliveries(
        self, endpoint_id: str, status: str | None, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """The endpoint's deliveries (without logs), newest event first, optionally of
        one status."""
        ...

    async def events_at(self, seqs: Sequence[int]) -> list[Event]:
        """The events with these seqs (those that exist), in seq order."""
        ...


def ledger_overage_micros(used: int, included: int, price_micros: int) -> int:
    """The overage cost of ``used`` units when ``included`` are free."""
    return max(0, used - included) * price_micros


def crossed_thresholds(
    before: int, after: int, included: int, thresholds: tuple[int, ...]
) -> list[int]:
    """The thresholds (percent of ``included``) that usage passes going ``before``→``after``."""
    if included <= 0:
        return []
    crossed = []
    for pct in thresholds:
        mark = included * pct / 100
        if before < mark <= after:
            crossed.append(pct)
    return crossed
