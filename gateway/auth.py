"""API keys and the principal a request acts as (a whole team, or one member)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import Clock
from gateway.directory import TtlCache
from gateway.errors import NotFound, Unauthorized
from gateway.ids import hash_secret, new_id, new_secret
from gateway.models import ApiKey
from gateway.store.base import Store

KEY_PREFIX = "gwk"


@dataclass(slots=True, frozen=True)
class Principal:
    """Who a request acts as: a team key (``member_id`` None) or a member key."""

    team_id: str
    member_id: str | None
    key_id: str

    def sees_member(self, member_id: str) -> bool:
        """Whether objects of ``member_id`` are visible to this principal."""
        return self.member_id is None or self.member_id == member_id


async def create_key(
    store: Store, clock: Clock, team_id: str, member_id: str | None = None
) -> tuple[ApiKey, str]:
    """A new API key for a team (or one member of it); returns the key and its secret."""
    if await store.get_team(team_id) is None:
        raise NotFound(f"team {team_id} does not exist")
    if member_id is not None:
        member = await store.get_member(member_id)
        if member is None or member.team_id != team_id:
            raise NotFound(f"member {member_id} does not exist in team {team_id}")
    secret = new_secret(KEY_PREFIX)
    key = ApiKey(new_id("key"), team_id, member_id, hash_secret(secret), secret[:10], clock.now())
    await store.create_api_key(key)
    return key, secret


class KeyCache:
    """Resolves bearer secrets to principals, caching hits briefly (hashing is cheap; the
    store round trip is not)."""

    def __init__(self, store: Store, ttl: float = 30.0, size: int = 10_000) -> None:
        self._store = store
        self._hits: TtlCache[str, Principal] = TtlCache(ttl, size)

    async def resolve(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` header, or ``Unauthorized``."""
        if not authorization:
            raise Unauthorized("missing Authorization header (use: Bearer <api key>)")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("the Authorization header must be: Bearer <api key>")
        principal = self._hits.get(secret)
        if principal is not None:
            return principal
        key = await self._store.api_key_by_hash(hash_secret(secret))
        if key is None:
            raise Unauthorized("unknown API key")
        principal = Principal(key.team_id, key.member_id, key.id)
        self._hits.put(secret, principal)
        return principal
