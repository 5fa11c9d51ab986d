"""Outbound rules that decide whether a member may send: sender ownership, add-ons, and
the team's outbound policy (destination screening and send limits).

The policy's data lives in ``destinations.py``; here it meets the send path. The provider
sets defaults in ``[policy]``; a team may override any field (``PUT /v1/policy``, stored
as the settings document ``policy:{team_id}``). Every process caches a team's effective
policy for ``PolicyBook.ttl`` seconds (a PUT refreshes it at once in the process that
served it).

* Destination screening (``screen``) runs in ``outbound.draft``, so the preview shows a
  blocked destination too. It covers the channels in ``destination_channels`` (SMS and
  fax by default: they are billed by destination, and premium-rate fax fraud is real). A
  WhatsApp message is delivered and billed by Meta, not by a phone carrier, so it is not
  screened — unless it asks for the SMS ``fallback``, which is screened as an SMS up
  front (the fallback later sends to the same number).
* Send limits (``send_limits``: per destination number of the team, per member; every
  channel) are taken by the store INSIDE the send's transaction (``submit_outbound``):
  exact across processes, and a send refused for any other reason takes no slot. The
  preview takes none.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.commands import PolicyUpdate, convert
from gateway.destinations import FIELDS, Policy, PolicyError, parse_fields
from gateway.directory import Directory, TtlCache
from gateway.errors import DestinationBlocked, Forbidden, ValidationError
from gateway.models import Channel, Member, Team, addon_allows, iso
from gateway.store.base import Limit, Store

if TYPE_CHECKING:
    from gateway.extensions import Host


async def sender_member(
    directory: Directory, team_id: str, member_id: str | None, channel: Channel, sender: str
) -> Member:
    """The member who may send from ``sender`` on ``channel``, or ``sender_not_owned``.

    A member key may only use its own member's numbers; a team key any member's of the
    team. The mobile number carries SMS and WhatsApp, the fax number fax.
    """
    member = await (
        directory.member(member_id) if member_id else directory.member_by_number(sender)
    )
    if member is None or member.team_id != team_id or member.number_for(channel) != sender:
        raise Forbidden(
            f"{sender} is not a {channel.value} number of "
            + ("this member" if member_id else "a member of this team"),
            code="sender_not_owned",
        )
    if not member.active:
        raise Forbidden(f"member {member.id} is not active", code="member_inactive")
    return member


def require_addon(member: Member, channel: Channel) -> None:
    """Refuse with ``addon_missing`` unless the member booked ``channel``."""
    if not addon_allows(member.addons, channel):
        needs = "sms or whatsapp" if channel == Channel.SMS else channel.value
        raise Forbidden(
            f"member {member.id} has not booked the {channel.value} add-on (needs: {needs})",
            code="addon_missing",
        )


# -- the outbound policy -----------------------------------------------------------------
def scope(team_id: str) -> str:
    """The settings scope of a team's policy override."""
    return f"policy:{team_id}"


@dataclass(frozen=True, slots=True)
class Effective:
    """A team's effective policy: the defaults with the team's override on top."""

    policy: Policy
    team_fields: frozenset[str]  # the fields the team's override sets
    updated_at: str | None  # when the override was stored (None: never)

    def view(self) -> dict[str, Any]:
        """What ``GET /v1/policy`` answers."""
        return {
            **self.policy.doc(),
            "team_fields": [f for f in FIELDS if f in self.team_fields],
            "updated_at": self.updated_at,
        }


class PolicyBook:
    """Effective policies by team, cached for ``ttl`` seconds (like the directory)."""

    def __init__(self, store: Store, ttl: float = 5.0, size: int = 100_000) -> None:
        self.store = store
        self.ttl = ttl
        # Each entry remembers the defaults it was built on: new defaults rebuild it.
        self._cache: TtlCache[str, tuple[Policy, Effective]] = TtlCache(ttl, size)

    async def effective(self, team: Team, defaults: Policy) -> Effective:
        """The team's effective policy (cached)."""
        hit = self._cache.get(team.id)
        if hit is not None and hit[0] is defaults:
            return hit[1]
        doc = await self.store.get_setting(scope(team.id))
        if doc is None:
            effective = Effective(defaults, frozenset(), None)
        else:
            # Stored in normal form by ``replace``; parsed again, so nothing unchecked runs.
            values = parse_fields(doc.get("override", {}), team.region)
            policy = Policy.build(defaults, values, lenient=True)
            effective = Effective(policy, frozenset(values), doc.get("updated_at"))
        self._cache.put(team.id, (defaults, effective))
        return effective

    async def replace(
        self, team: Team, update: PolicyUpdate | object, defaults: Policy, now: datetime
    ) -> Effective:
        """Check ``update`` (the command, or a parsed JSON body, checked as the API checks
        it) and store it as the team's whole override (fields it leaves out take the
        defaults); ``ValidationError`` names the first bad field."""
        if not isinstance(update, PolicyUpdate):
            update = convert(PolicyUpdate, update)
        try:
            values = parse_fields(update.fields(), team.region)
            policy = Policy.build(defaults, values)
        except PolicyError as exc:
            raise ValidationError(str(exc), field=exc.field) from None
        at = iso(now)
        await self.store.put_setting(scope(team.id), {"override": values, "updated_at": at})
        effective = Effective(policy, frozenset(values), at)
        self._cache.put(team.id, (defaults, effective))
        return effective


_BOOKS: weakref.WeakKeyDictionary[Host, PolicyBook] = weakref.WeakKeyDictionary()


def book(rt: Host) -> PolicyBook:
    """The policy book of ``rt`` (one per runtime, made on first use)."""
    found = _BOOKS.get(rt)
    if found is None:
        found = _BOOKS[rt] = PolicyBook(rt.store)
    return found


async def effective_policy(rt: Host, team: Team) -> Policy:
    """The team's effective policy, on the provider's current defaults."""
    return (await book(rt).effective(team, rt.settings.policy)).policy


_LOCKED_CHANNELS = frozenset({Channel.SMS, Channel.FAX})


def screen(policy: Policy, channel: Channel, to: str, fallback: str | None = None) -> None:
    """Refuse with ``destination_blocked`` when the policy does not allow sending to ``to``
    on ``channel`` (or on its SMS ``fallback``)."""
    screened = policy.destination_channels
    if channel.value in screened or channel in _LOCKED_CHANNELS:
        as_channel, note = channel, ""
    elif fallback == Channel.SMS.value:
        as_channel, note = Channel.SMS, " (checked for the SMS fallback)"
    else:
        return
    # Provider-locked prefixes hold on the telephony-billed channels whatever the team set.
    why = policy.locked_refusal(to) if as_channel in _LOCKED_CHANNELS else None
    if why is None and as_channel.value in screened:
        why = policy.refusal(to)
    if why is not None:
        raise DestinationBlocked(why[0] + note, **why[1])


def send_limits(policy: Policy, team_id: str, member_id: str, to: str) -> tuple[Limit, ...]:
    """The limits a send from ``member_id`` to ``to`` must fit in (for ``submit_outbound``)."""
    limits = []
    if policy.destination_limit is not None:
        window = policy.destination_window_seconds * 1000
        key = f"dest:{team_id}:{to}"
        limits.append(Limit(key, policy.destination_limit, window, "destination", to))
    if policy.member_limit is not None:
        window = policy.member_window_seconds * 1000
        key = f"member:{member_id}"
        limits.append(Limit(key, policy.member_limit, window, "member", member_id))
    return tuple(limits)
