"""The core's side of two connector seams (``connectors.base``): progress of a long send
(``MessageProgress``: merged meta and an event, e.g. a fax's confirmed pages) and the
screening of an inbound call before it is taken (``InboundScreen``: unknown number, or a
caller the team's inbound policy refuses)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.clock import Clock
from gateway.destinations import Policy, parse_fields
from gateway.directory import Directory
from gateway.ids import new_id
from gateway.models import Channel, Event
from gateway.store.base import StatusUpdate, Store


def merged(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``, dict values merged one level deep."""
    out = dict(old)
    for key, value in new.items():
        prior = out.get(key)
        if isinstance(value, Mapping) and isinstance(prior, Mapping):
            out[key] = {**prior, **value}
        else:
            out[key] = value
    return out


class ConnectorHooks:
    """``MessageProgress`` and ``InboundScreen`` on the runtime's store and directory
    (given as parts: the runtime builds these before its connectors)."""

    def __init__(self, store: Store, clock: Clock, directory: Directory, defaults: Policy) -> None:
        self.store = store
        self.clock = clock
        self.directory = directory
        self.defaults = defaults

    async def progress(
        self,
        message_id: str,
        meta: Mapping[str, Any],
        event: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Merge ``meta`` into the message's meta; append ``event`` when given."""
        msg = await self.store.get_message(message_id)
        if msg is None:
            return
        now = self.clock.now()
        update = {k: v for k, v in merged(msg.meta, meta).items() if k in meta}
        await self.store.update_message(message_id, StatusUpdate(meta=update), now)
        if event is not None:
            # The portal routes a live event by member and conversation.
            payload = {"message_id": message_id, "member_id": msg.member_id,
                       "conversation_id": msg.conversation_id, **(data or {})}
            await self.store.append_events([Event(new_id("evt"), event, msg.team_id, payload, now)])

    async def screen(self, channel: str, to: str, from_: str) -> str:
        """``ok``, ``unknown`` (no member owns ``to`` on ``channel``) or ``blocked``."""
        member = await self.directory.member_by_number(to)
        if member is None or not member.active or member.number_for(Channel(channel)) != to:
            return "unknown"
        team = await self.directory.team(member.team_id)
        if team is None:
            return "unknown"
        if channel == Channel.FAX.value:
            # The team's override as gateway.policy stores it (scope "policy:{team}"); read
            # here without its cache: a fax call is rare, and this module must not import
            # gateway.policy (which reaches the runtime that builds these hooks).
            doc = await self.store.get_setting(f"policy:{team.id}")
            values = parse_fields(doc.get("override", {}), team.region) if doc else {}
            effective = Policy.build(self.defaults, values, lenient=True)
            if effective.inbound_fax_refused(from_):
                return "blocked"
        return "ok"
