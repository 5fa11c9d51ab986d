"""Teams, members and conversations as the hot paths read them, cached briefly.

Every send reads its team, its member and its conversation; asking the store each time
costs more than the send itself. Teams and members are cached for ``ttl`` seconds (an
operator's change is seen by every process within that time); a conversation's identity
(team, member, numbers → id) never changes, so it is cached until evicted. Misses are
never cached: a member created a moment ago is found at once. Settings documents (e.g.
forwarding rules, read on every inbound message) are the exception: "none stored" is
the common case and is cached too; a change made in this process is seen at once, one
made in another process within ``ttl``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime
from typing import Any, Generic, TypeVar

from gateway.models import Conversation, Member, Team
from gateway.store.base import Store

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded mapping whose entries expire ``ttl`` seconds after they were put."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The live value of ``key``, or None."""
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            del self._data[key]
            return None
        return hit[1]

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()

    def put(self, key: K, value: V) -> None:
        """Remember ``value``; the oldest entry goes when the cache is full."""
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        if len(self._data) > self.size:
            self._data.popitem(last=False)


class Directory:
    """Cached reads of teams, members and conversations (writes go to the store)."""

    def __init__(self, store: Store, ttl: float = 5.0, size: int = 100_000) -> None:
        self.store = store
        self._teams: TtlCache[str, Team] = TtlCache(ttl, size)
        self._members: TtlCache[str, Member] = TtlCache(ttl, size)
        self._numbers: TtlCache[str, Member] = TtlCache(ttl, size)
        self._conversations: TtlCache[tuple[str, str, str], Conversation] = TtlCache(
            float("inf"), size
        )
        # Wrapped in a 1-tuple so that "no document" (None) is cacheable.
        self._settings: TtlCache[str, tuple[dict[str, Any] | None]] = TtlCache(ttl, size)

    async def setting(self, scope: str) -> dict[str, Any] | None:
        """The settings document under ``scope`` (cached, absence included)."""
        hit = self._settings.get(scope)
        if hit is None:
            hit = (await self.store.get_setting(scope),)
            self._settings.put(scope, hit)
        return hit[0]

    async def put_setting(self, scope: str, doc: dict[str, Any]) -> None:
        """Store a settings document and see it at once in this process."""
        await self.store.put_setting(scope, doc)
        self._settings.put(scope, (doc,))

    async def team(self, team_id: str) -> Team | None:
        """The team (cached)."""
        team = self._teams.get(team_id)
        if team is None:
            team = await self.store.get_team(team_id)
            if team is not None:
                self._teams.put(team_id, team)
        return team

    async def member(self, member_id: str) -> Member | None:
        """The member (cached)."""
        member = self._members.get(member_id)
        if member is None:
            member = await self.store.get_member(member_id)
            if member is not None:
                self._members.put(member_id, member)
        return member

    async def member_by_number(self, number: str) -> Member | None:
        """The member owning ``number`` (cached)."""
        member = self._numbers.get(number)
        if member is None:
            member = await self.store.member_by_number(number)
            if member is not None:
                self._numbers.put(number, member)
        return member

    async def conversation(
        self, team_id: str, member_id: str, member_number: str, remote_number: str, now: datetime
    ) -> Conversation:
        """The conversation of (team, member's number, remote number), created if new.

        Only its identity is cached: ``last_message_at`` of the result may be stale.
        """
        key = (team_id, member_number, remote_number)
        conv = self._conversations.get(key)
        if conv is None:
            conv = await self.store.conversation_for(
                team_id, member_id, member_number, remote_number, now
            )
            self._conversations.put(key, conv)
        return conv
