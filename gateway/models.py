"""The gateway's data model: plain dataclasses shared by the store, the API and connectors.

Every object is serialised the same way for both store backends (``to_dict``/``from_dict``),
so the SQLite and Redis stores hold identical documents and the API shows the same fields.
Times are timezone-aware UTC datetimes; money is held in integer micro-euros (1e-6 EUR) so
that sums never drift.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias


class Channel(StrEnum):
    """The three channels the gateway bridges."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    FAX = "fax"


class Direction(StrEnum):
    """Whether a message leaves the gateway or arrives at it."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Status(StrEnum):
    """One status model for every channel (see DESIGN.md, Statuses)."""

    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    RECEIVED = "received"


# Forward order of the outbound statuses. ``queued`` (waiting for a retry or for a
# connector to come back) and ``sending`` (handed to the connector) share a rank: a retry
# legitimately moves a message between them, and neither is progress towards the carrier.
_RANK = {
    Status.ACCEPTED: 0,
    Status.QUEUED: 1,
    Status.SENDING: 1,
    Status.SENT: 2,
    Status.DELIVERED: 3,
    Status.READ: 4,
}
FINAL_STATUSES = frozenset({Status.FAILED, Status.READ, Status.RECEIVED})


def can_transition(current: Status, new: Status) -> bool:
    """Whether a message may move from ``current`` to ``new``: forward only, finals stay."""
    if current == new or current in FINAL_STATUSES:
        return False
    if new == Status.FAILED:
        return True
    if new not in _RANK or current not in _RANK:
        return False
    return _RANK[new] >= _RANK[current]


class Plan(StrEnum):
    """The team plans and their member caps."""

    STARTER = "starter"
    BUSINESS = "business"

    @property
    def max_members(self) -> int:
        """How many active members the plan allows."""
        return {Plan.STARTER: 2, Plan.BUSINESS: 10}[self]


class Addon(StrEnum):
    """Bookable channel add-ons; WhatsApp includes SMS."""

    SMS = "sms"
    WHATSAPP = "whatsapp"
    FAX = "fax"


def addon_allows(addons: frozenset[str], channel: Channel) -> bool:
    """Whether a member with ``addons`` may use ``channel`` (WhatsApp includes SMS)."""
    if channel == Channel.SMS:
        return Addon.SMS in addons or Addon.WHATSAPP in addons
    return channel.value in addons


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


_iso_cache: dict[datetime, str] = {}


def iso(ts: datetime) -> str:
    """Render a UTC datetime as RFC 3339 with millisecond precision and a ``Z``."""
    # A send renders its ``now`` about ten times (message, event, job, response), and
    # the sends of one tick interleave: remember the last few hundred.
    text = _iso_cache.get(ts)
    if text is None:
        utc = ts if ts.tzinfo is UTC else ts.astimezone(UTC)  # the gateway's times are UTC
        text = utc.isoformat(timespec="milliseconds")[:-6] + "Z"
        if len(_iso_cache) >= 512:
            _iso_cache.clear()
        _iso_cache[ts] = text
    return text


def parse_iso(text: str) -> datetime:
    """Parse what :func:`iso` wrote."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(ts: datetime) -> int:
    """Exact integer milliseconds since the epoch, truncated like ``iso()`` (the stores'
    sort keys and times kept beside documents)."""
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """The UTC time of :func:`to_ms`."""
    return _EPOCH + timedelta(milliseconds=ms)


def _dump(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, datetime):
            value = iso(value)
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _times(data: dict[str, Any], *names: str) -> dict[str, Any]:
    data = dict(data)
    for name in names:
        if data.get(name) is not None:
            data[name] = parse_iso(data[name])
    return data


@dataclass(slots=True)
class Team:
    """A customer of the provider; quotas and the credit limit apply per team."""

    id: str
    name: str
    plan: str
    credit_limit_micros: int
    region: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return _dump(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Team:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at"))


@dataclass(slots=True)
class Member:
    """A team member: the mobile number carries SMS (and the SMS fallback of WhatsApp),
    the fax number fax, and WhatsApp its own number — a mobile or a landline one (not
    the fax number) — or, when none is set, the mobile number."""

    id: str
    team_id: str
    name: str
    email: str
    mobile: str | None
    fax: str | None
    addons: frozenset[str]
    active: bool
    created_at: datetime
    whatsapp: str | None = None  # None: WhatsApp on the mobile number

    def number_for(self, channel: Channel) -> str | None:
        """The member's own number on ``channel``."""
        if channel == Channel.FAX:
            return self.fax
        if channel == Channel.WHATSAPP:
            return self.whatsapp or self.mobile
        return self.mobile

    def numbers(self) -> list[str]:
        """Every number the member owns (each once)."""
        return list(dict.fromkeys(n for n in (self.mobile, self.whatsapp, self.fax) if n))

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return _dump(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        """Load what :meth:`to_dict` wrote."""
        data = _times(data, "created_at")
        data["addons"] = frozenset(data["addons"])
        return cls(**data)


@dataclass(slots=True)
class ApiKey:
    """An API key; only the SHA-256 of the secret is stored."""

    id: str
    team_id: str  # "" for an operator key (no team: the operator's routes only)
    member_id: str | None
    key_hash: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None  # None: until revoked
    operator: bool = False

    def expired(self, now: datetime) -> bool:
        """Whether the key no longer works at ``now``."""
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return _dump(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApiKey:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at", "expires_at"))


@dataclass(slots=True)
class Conversation:
    """Team + member's number + remote number; SMS and WhatsApp with one contact share it."""

    id: str
    team_id: str
    member_id: str
    member_number: str
    remote_number: str
    created_at: datetime
    last_message_at: datetime
    # Last inbound WhatsApp message per business number: the 24-hour window opens there.
    last_inbound_whatsapp_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return _dump(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at", "last_message_at", "last_inbound_whatsapp_at"))


@dataclass(slots=True)
class Message:
    """One message on any channel, in either direction."""

    id: str
    team_id: str
    member_id: str
    conversation_id: str
    channel: str
    direction: str
    from_: str
    to: str
    text: str | None
    attachments: list[str]
    status: str
    units: int
    segments: int
    encoding: str | None
    created_at: datetime
    updated_at: datetime
    connector_id: str | None = None
    carrier_id: str | None = None
    error: dict[str, Any] | None = None
    fallback: str | None = None
    # The ledger period (YYYY-MM, Europe/Berlin) the units were charged to; None when
    # nothing is (still) charged — a release clears it, so it can never happen twice.
    charged_period: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store (spelled out: it runs on every send)."""
        return {
            "id": self.id,
            "team_id": self.team_id,
            "member_id": self.member_id,
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "direction": self.direction,
            "from_": self.from_,
            "to": self.to,
            "text": self.text,
            "attachments": list(self.attachments),
            "status": self.status,
            "units": self.units,
            "segments": self.segments,
            "encoding": self.encoding,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "connector_id": self.connector_id,
            "carrier_id": self.carrier_id,
            "error": self.error,
            "fallback": self.fallback,
            "charged_period": self.charged_period,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at", "updated_at"))

    def public(self) -> dict[str, Any]:
        """The message as the API and webhooks show it."""
        out: dict[str, Any] = {
            "id": self.id,
            "channel": self.channel,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "text": self.text,
            "attachments": list(self.attachments),
            "status": self.status,
            "units": self.units,
            "segments": self.segments,
            "encoding": self.encoding,
            "conversation_id": self.conversation_id,
            "member_id": self.member_id,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
        if self.fallback:
            out["fallback"] = self.fallback
        if self.meta and self.direction == Direction.OUTBOUND:
            out.update(outbound_extras(self.meta))
        fax = fax_view(self.meta) if self.channel == Channel.FAX else None
        if fax:
            out["fax"] = fax
        if self.error:
            out["error"] = self.error
        return out


# What a fax message's view shows of ``meta["fax"]`` (the fax channel writes it: pages and
# progress, the attachments it made, the transmission report, the retry schedule).
FAX_VIEW_KEYS = ("pages", "pages_sent", "phase", "tiff", "pdf", "thumbnail", "report",
                 "tries", "dials", "next_try", "retry_reason", "cover")  # fmt: skip


def fax_view(meta: dict[str, Any]) -> dict[str, Any]:
    """The ``fax`` object of a fax message's view (keys without a value left out)."""
    section = meta.get("fax")
    if not isinstance(section, dict):
        return {}
    return {k: section[k] for k in FAX_VIEW_KEYS if section.get(k) is not None}


def outbound_extras(meta: dict[str, Any]) -> dict[str, Any]:
    """What an outbound message's view adds from its ``meta`` (``gateway/window.py``): its
    WhatsApp ``template``, and once the SMS fallback was used ``requested_channel``,
    ``fallback_used`` and ``fallback_reason``."""
    out: dict[str, Any] = {}
    section = meta.get("whatsapp")
    if isinstance(section, dict) and isinstance(section.get("template"), dict):
        out["template"] = section["template"]
    used = meta.get("fallback_used")
    if isinstance(used, dict):
        out["requested_channel"] = used.get("from")
        out["fallback_used"] = used.get("to")
        out["fallback_reason"] = used.get("reason")
    return out


@dataclass(slots=True)
class Attachment:
    """A file owned by a team, and by the member who uploaded or received it (None: the
    whole team's — a team key's upload, or one stored before attachments had owners); the
    bytes live in the blob store under their SHA-256."""

    id: str
    team_id: str
    sha256: str
    size: int
    content_type: str
    filename: str | None
    created_at: datetime
    member_id: str | None = None

    def visible_to(self, team_id: str, member_id: str | None) -> bool:
        """Whether a caller of ``team_id`` (a member key: ``member_id``) may see it: like
        messages, a member sees their own (and the team's); a team key sees all of them."""
        return self.team_id == team_id and (
            member_id is None or self.member_id is None or member_id == self.member_id
        )

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return _dump(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Attachment:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at"))

    def public(self) -> dict[str, Any]:
        """The attachment as the API shows it."""
        return {
            "id": self.id,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "filename": self.filename,
            "created_at": iso(self.created_at),
        }


@dataclass(slots=True)
class StatusChange:
    """One entry of a message's status history."""

    message_id: str
    status: str
    at: datetime
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "message_id": self.message_id,
            "status": self.status,
            "at": iso(self.at),
            "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StatusChange:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "at"))


@dataclass(slots=True)
class Event:
    """An entry of the event log; ``seq`` is assigned by the store, strictly increasing."""

    id: str
    type: str
    team_id: str
    data: dict[str, Any]
    created_at: datetime
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "id": self.id,
            "type": self.type,
            "team_id": self.team_id,
            "data": self.data,
            "created_at": iso(self.created_at),
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "created_at"))


@dataclass(slots=True)
class Job:
    """A durable unit of work; ``token`` identifies the current lease."""

    id: str
    kind: str
    payload: dict[str, Any]
    run_at: datetime
    max_attempts: int
    attempts: int = 0
    state: str = "ready"  # ready | leased | dead
    lease_until: datetime | None = None
    token: str | None = None
    last_error: str | None = None
    created_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the store."""
        return {
            "id": self.id,
            "kind": self.kind,
            "payload": self.payload,
            "run_at": iso(self.run_at),
            "max_attempts": self.max_attempts,
            "attempts": self.attempts,
            "state": self.state,
            "lease_until": None if self.lease_until is None else iso(self.lease_until),
            "token": self.token,
            "last_error": self.last_error,
            "created_at": None if self.created_at is None else iso(self.created_at),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        """Load what :meth:`to_dict` wrote."""
        return cls(**_times(data, "run_at", "lease_until", "created_at"))


# What runs one job of a kind: bound to its context (a closure over the runtime, or a
# bound method of a connector or an extension), handed to the worker explicitly (the core
# builds its own, ``Connector.job_handlers()`` and ``Extension.job_handlers(host)`` declare
# theirs). It returns True when its last store write already finished (acked) the job,
# atomically with what it recorded (``Store.complete_send``); else the worker acks it. It
# raises ``gateway.retry.Retry`` to run the job again later.
JobHandler: TypeAlias = Callable[[Job], Awaitable[bool | None]]


@dataclass(slots=True, frozen=True)
class Charge:
    """Units to charge to a member's monthly ledger, with what the store needs to cap it.

    The store checks and books it atomically with the message: the team's overage cost in
    ``period`` after the charge must not pass ``credit_limit_micros``.
    """

    team_id: str
    member_id: str
    channel: str
    period: str
    units: int
    included: int
    overage_price_micros: int
    credit_limit_micros: int
    thresholds: tuple[int, ...] = (80, 100)


@dataclass(slots=True, frozen=True)
class LedgerLine:
    """Units used by one member on one channel in one period."""

    member_id: str
    channel: str
    period: str
    used: int
