"""The Store protocol: the one seam between the gateway and its storage backends.

Two backends implement it, ``sqlite.py`` (embedded default) and ``redis.py`` (shared by
many processes), and ONE contract suite (``tests/gateway/store/test_contract.py``) runs
against both. Nothing above the store knows which backend runs. Extensions keep their own
data beside the core's through storage roles (``roles.py``), not through this protocol.

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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from gateway.coordination import Coordination
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
    # What the first request reserved when it claimed the key (e.g. the id of the message
    # it creates): kept while the claim is pending, so a retry can resume that request.
    ref: str | None = None


class MessageExists(Exception):
    """``submit_outbound`` was given the id of a message that is already stored."""

    def __init__(self, message_id: str) -> None:
        super().__init__(f"message {message_id} is already stored")
        self.message_id = message_id


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
    # Attachments added to the message (e.g. the fax pages its preparation job made).
    attachments: tuple[str, ...] = ()


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
    # The number it goes from on the new channel (None: the same): a member's WhatsApp
    # number may be a landline, and their SMS goes from their mobile number.
    sender: str | None = None


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


IDEM_KEEP = timedelta(hours=24)  # how long a response is replayed for its key (default)


# -- end outbound policy -------------------------------------------------------------------
class EventWaiter(Protocol):
    """Waits for the store's event log to grow (a read model's idle time)."""

    async def wait(self, after_seq: int, timeout: float) -> None:
        """Return once an event after ``after_seq`` may exist, or after ``timeout``
        seconds (early returns are allowed: the caller looks at the log anyway)."""
        ...

    async def aclose(self) -> None:
        """Release what the waiter holds (a subscription)."""
        ...


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

    async def set_member_active(
        self, member_id: str, active: bool, max_active: int
    ) -> Member | None:
        """Activate or deactivate a member atomically with the plan check; None when the
        member does not exist. Activating raises ``Forbidden(code="plan_limit")`` when the
        team already has ``max_active`` active members."""
        ...

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (only its hash)."""
        ...

    async def api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The API key whose secret hashes to ``key_hash``, or None."""
        ...

    async def list_api_keys(self, team_id: str) -> list[ApiKey]:
        """The team's API keys, oldest first."""
        ...

    async def delete_api_key(self, team_id: str, key_id: str) -> bool:
        """Revoke the team's key ``key_id`` (``api_key_by_hash`` no longer finds it);
        False when the team has no such key."""
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

        A message with ``message.id`` already stored (the caller chose the id to make a
        send safe to repeat: an idempotent request resumed after a crash, a forward job run
        again) raises ``MessageExists`` before anything else is checked, and nothing is
        written: no second charge, no second job. Then ``limits`` are checked (see
        ``Limit``): if one is full at ``message.created_at``, raise ``limit.refusal(...)``
        (``RateLimited``) and write nothing; a send refused for any reason takes no slot,
        an accepted one takes one slot of every limit. Then the charge: if the team's
        overage cost in ``charge.period`` (sum over members and channels of units above
        ``included`` x price) would pass ``charge.credit_limit_micros``, raise
        ``CreditLimitExceeded`` and write nothing.
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

    # The job bell: how a process that enqueued a job wakes an idle worker of another
    # process at once (polling stays as the fallback). ``shared``: other processes may
    # use this store's queue (Redis); a store only one process opens (SQLite) has no
    # bell to ring or wait for.
    shared: bool

    def event_waiter(self) -> EventWaiter:
        """A new waiter on the event log (what the read models that follow the log wait
        on between looks; ``gateway/store/event_waiters.py``). Close it when done."""
        ...

    def ring_job_bell(self) -> None:
        """Wake one idle worker of any process (rings that come while one is on its way
        are folded into one more ring); never raises, never waits."""
        ...

    async def wait_job_bell(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a ring; True when this caller took one."""
        ...

    def coordination(self) -> Coordination:
        """What the processes sharing this store agree on (carrier session slots, send
        rates, inbound part sets): ``gateway/coordination.py``."""
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

    async def message_of_job(self, job: Job) -> Message | None:
        """The message a job this process just leased is about (``payload["message_id"]``),
        or None: as the store read it with the lease when it did (Redis reads it in the
        lease's own round trip, so a send costs no read of its own), else read now. Ask
        once per lease, right after it: a later question reads the store again."""
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

    async def events_at(self, seqs: Sequence[int]) -> list[Event]:
        """The events with these seqs (those that exist), in seq order."""
        ...

    # -- idempotency -----------------------------------------------------------------
    async def idem_claim(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        now: datetime,
        ttl: timedelta,
        ref: str | None = None,
    ) -> IdemRecord | None:
        """Claim ``key`` in ``scope``: None if this caller now holds it, else the record.

        ``ref`` is kept with the claim and returned (``IdemRecord.ref``) to whoever finds
        it pending. A claim that was never completed expires after ``ttl`` and can be
        claimed again.
        """
        ...

    async def idem_complete(
        self,
        scope: str,
        key: str,
        status_code: int,
        body: str,
        now: datetime,
        keep: timedelta = IDEM_KEEP,
    ) -> None:
        """Store the response of the request that holds the claim, replayed for ``keep``."""
        ...

    # -- retention (``gateway/retention.py`` calls these in small batches) ------------
    async def prune_events(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the oldest events, those created before ``before``
        (the log's oldest first; it stops at the first newer one); how many it deleted."""
        ...

    async def prune_idempotency(self, now: datetime, limit: int) -> int:
        """Delete up to ``limit`` idempotency records that expired by ``now``; how many."""
        ...

    async def idem_release(self, scope: str, key: str) -> None:
        """Drop a claim whose request failed without a response worth replaying."""
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
