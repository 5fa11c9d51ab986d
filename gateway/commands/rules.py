"""The commands that set rules: a member's forwarding rules, a team's outbound policy.

``PUT /v1/members/{id}/forwarding`` takes :class:`ForwardingRules` (checked further by
``forwarding.validate``: addresses, numbers, repeats, the relay, the add-on);
``PUT /v1/policy`` takes :class:`PolicyUpdate` (normalized by
``destinations.parse_fields``: countries, prefixes, prefixes both blocked and allowed).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.commands.base import Command, Fault
from gateway.destinations import FIELDS as POLICY_FIELDS
from gateway.destinations import MAX_LIMIT, MAX_PREFIXES, MAX_WINDOW_SECONDS, PROVIDER_FIELDS
from gateway.errors import GatewayError, ValidationError
from gateway.models import Channel

Forwardable = Literal["sms", "whatsapp"]
FORWARDABLE: tuple[Forwardable, ...] = get_args(Forwardable)
MAX_EMAIL = 5
MAX_SMS = 5
MAX_COUNTRIES = 1000

# -- forwarding rules ----------------------------------------------------------------------
_ITEM_REFUSALS = {
    "channels": "must be one of sms, whatsapp (got {value!r})",
    "email": "not an email address (not a string)",
    "sms": "not a phone number (not a string)",
}


class ForwardingRules(Command, kw_only=True):
    """The new rules; they replace the old ones whole, and a field left out takes its
    default. `member_id` and `updated_at` (as GET answers them) may be sent back:
    `member_id` must name the member, `updated_at` is ignored."""

    enabled: Annotated[
        bool,
        Meta(description="Off: nothing is forwarded (the lists are kept)."),
    ] = True
    channels: Annotated[
        list[Forwardable],
        Meta(
            max_length=len(FORWARDABLE),
            description="The inbound channels whose messages are forwarded.",
            extra_json_schema={"uniqueItems": True, "default": list(FORWARDABLE)},
        ),
    ] = msgspec.field(default_factory=lambda: list(FORWARDABLE))
    email: Annotated[
        list[Annotated[str, Meta(extra_json_schema={"format": "email"})]],
        Meta(
            max_length=MAX_EMAIL,
            description="Addresses that get each inbound message as an email (free): the "
            "text, the time and the channel, with WhatsApp media attached. Bare addresses "
            "only (no display names); needs the gateway's SMTP relay.",
            examples=[["anna@acme.example"]],
        ),
    ] = []
    sms: Annotated[
        list[str],
        Meta(
            max_length=MAX_SMS,
            description="Mobile numbers that get each inbound message as an SMS (`Fwd "
            "<sender>: <text>`) from the member's mobile number. Each forward is an "
            "outbound SMS charged to the member like any other (units x recipients); needs "
            "the sms add-on (WhatsApp includes it). A forward the credit limit refuses is "
            "not sent and not retried (a `forward.failed` event says so). E.164 or national "
            "format; answered in E.164.",
            examples=[["+4917612345678"]],
        ),
    ] = []
    member_id: Annotated[str | UnsetType, Meta(description="Must be the path's member.")] = UNSET
    updated_at: Annotated[Any, Meta(description="Ignored.")] = None

    @classmethod
    def refuse(cls, fault: Fault, body: Any) -> GatewayError:
        """The refusals ``forwarding.validate`` has always answered."""
        top = fault.path[0] if fault.path else None
        if top == "member_id":
            return ValidationError(
                "'member_id' does not match the member in the path", field="member_id"
            )
        if top == "enabled":
            return ValidationError("'enabled' must be true or false", field="enabled")
        if isinstance(top, str) and top in _ITEM_REFUSALS:
            if len(fault.path) > 1:
                where = fault.where
                said = _ITEM_REFUSALS[top].format(value=fault.value(body))
                return ValidationError(f"{where}: {said}", field=where)
            if fault.kind == "constraint":
                limit = {"channels": len(FORWARDABLE), "email": MAX_EMAIL, "sms": MAX_SMS}[top]
                return ValidationError(f"'{top}' takes at most {limit} entries", field=top)
            return ValidationError(f"'{top}' must be a list", field=top)
        return super().refuse(fault, body)


# -- the outbound policy -----------------------------------------------------------------
Prefix = Annotated[
    str,
    Meta(
        description="E.164 (`+49900`) or national notation in the team's region (`0900`, "
        "`118`)."
    ),
]
Prefixes = Annotated[list[Prefix], Meta(max_length=MAX_PREFIXES)]
Country = Annotated[str, Meta(extra_json_schema={"pattern": r"^([A-Za-z]{2}|\*)$"})]
_LIMIT = f"expected a whole number from 1 to {MAX_LIMIT}, or null for no limit"
_WINDOW = f"expected whole seconds from 1 to {MAX_WINDOW_SECONDS} (31 days)"
_LIST_LIMITS = {
    "countries": MAX_COUNTRIES,
    "blocked_prefixes": MAX_PREFIXES,
    "allowed_prefixes": MAX_PREFIXES,
    "destination_channels": len(Channel),
    "inbound_fax_blocked": MAX_PREFIXES,
    "inbound_fax_allowed": MAX_PREFIXES,
}


Count = Annotated[int, Meta(ge=1, le=MAX_LIMIT)]
Window = Annotated[int, Meta(ge=1, le=MAX_WINDOW_SECONDS)]


class PolicyUpdate(Command, kw_only=True):
    """The team's new override; it replaces the old one whole, and a field left out takes
    the provider's default (`{}` resets everything)."""

    __not_object__: ClassVar[str] = "the body must be a JSON object of policy fields"
    __body_order__: ClassVar[bool] = True  # as destinations.parse_fields reads it

    countries: Annotated[
        Annotated[list[Country], Meta(max_length=MAX_COUNTRIES)] | UnsetType,
        Meta(
            description="ISO 3166-1 alpha-2 countries a screened destination may be in; "
            '`["*"]`: any. Default: the EU-27.',
        ),
    ] = UNSET
    blocked_prefixes: Annotated[
        Prefixes | UnsetType,
        Meta(
            description="Number prefixes that refuse a screened destination. Default: the "
            "German premium and special ranges +49137, +49180, +49190, +49900, +49118.",
        ),
    ] = UNSET
    allowed_prefixes: Annotated[
        Prefixes | UnsetType,
        Meta(
            description="Exceptions: the longest prefix of the number found in either list "
            "decides (an allowed `+491801234` re-opens part of a blocked `+49180`); an "
            "allowed prefix also admits a country not in `countries`.",
        ),
    ] = UNSET
    destination_channels: Annotated[
        Annotated[list[Channel], Meta(max_length=len(Channel))] | UnsetType,
        Meta(
            description="The channels whose destinations are screened. Default: sms, fax "
            "(WhatsApp is delivered by Meta, not a phone carrier; a WhatsApp message with the "
            "SMS `fallback` is screened as an SMS when sms is listed).",
            extra_json_schema={"uniqueItems": True},
        ),
    ] = UNSET
    destination_limit: Annotated[
        Count | UnsetType | None,
        Meta(
            description="Accepted sends (every channel) to one number per "
            "`destination_window_seconds`; null to turn the limit off. Default: 20."
        ),
    ] = UNSET
    destination_window_seconds: Annotated[
        Window | UnsetType, Meta(description="Default: 3600.")
    ] = UNSET
    member_limit: Annotated[
        Count | UnsetType | None,
        Meta(
            description="Accepted sends (every channel) by one member per "
            "`member_window_seconds`; null to turn the limit off. Default: 60."
        ),
    ] = UNSET
    member_window_seconds: Annotated[Window | UnsetType, Meta(description="Default: 60.")] = UNSET
    inbound_fax_blocked: Annotated[
        Prefixes | UnsetType,
        Meta(description="Callers (numbers or prefixes) whose fax calls are refused (SIP "
             "603). Default: none."),
    ] = UNSET
    inbound_fax_allowed: Annotated[
        Prefixes | UnsetType,
        Meta(description="When not empty, only callers with one of these numbers or "
             "prefixes may fax the team (others get SIP 603). Default: empty (everyone)."),
    ] = UNSET

    def fields(self) -> dict[str, Any]:
        """The fields given, as ``destinations.parse_fields`` takes them."""
        out = msgspec.structs.asdict(self)
        return {k: v for k, v in out.items() if v is not UNSET}

    @classmethod
    def refuse(cls, fault: Fault, body: Any) -> GatewayError:
        """The refusals ``destinations.parse_fields`` has always answered."""
        if not fault.path and fault.kind == "type":
            return ValidationError(cls.__not_object__)
        if fault.kind == "unknown":
            name = fault.names[0]
            if name in PROVIDER_FIELDS:
                said = "set by the provider; a team's policy cannot change it"
            else:
                said = f"unknown field (known: {', '.join(POLICY_FIELDS)})"
            return ValidationError(f"{name}: {said}", field=name)
        name = str(fault.path[0])
        if name in _LIST_LIMITS:
            if fault.kind == "constraint" and len(fault.path) == 1:
                said = f"at most {_LIST_LIMITS[name]} entries"
            elif fault.kind == "value":
                known = ", ".join(c.value for c in Channel)
                said = f"unknown channel {fault.value(body)!r} (use {known})"
            else:
                said = "expected a list of strings"
        else:
            said = _WINDOW if name.endswith("_seconds") else _LIMIT
        return ValidationError(f"{name}: {said}", field=name)
