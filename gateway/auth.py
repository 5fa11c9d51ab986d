"""API keys and the principal a request acts as (a whole team, one member, or the
operator).

Keys are resolved through a per-process cache (hashing is cheap; the store round trip is
not). A revocation must still end a key within a second on every process sharing the
store: whatever takes access away (revoking a key, deactivating a member) writes a fresh
*epoch* into the store (``keys_changed``), and each process's ``KeyCache`` reads it at
most every ``EPOCH_CHECK`` seconds and forgets everything it cached when it changed. The
cost is one small store read per process per half second, whatever the request rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway.clock import Clock, SystemClock
from gateway.directory import TtlCache
from gateway.errors import Forbidden, NotFound, Unauthorized, ValidationError
from gateway.ids import hash_secret, new_id, new_secret
from gateway.models import ApiKey
from gateway.store.base import Store

KEY_PREFIX = "gwk"
EPOCH_SCOPE = "auth.epoch"  # the settings document holding the epoch
EPOCH_CHECK = 0.5  # seconds between a process's looks at the epoch
OPERATOR_ONLY = "this route takes an operator key (gateway admin key create --operator)"


@dataclass(slots=True, frozen=True)
class Principal:
    """Who a request acts as: a team key (``member_id`` None), a member key, or the
    operator's key (``operator``; no team)."""

    team_id: str
    member_id: str | None
    key_id: str
    operator: bool = False

    def sees_member(self, member_id: str) -> bool:
        """Whether objects of ``member_id`` are visible to this principal."""
        return self.member_id is None or self.member_id == member_id


async def create_key(
    store: Store,
    clock: Clock,
    team_id: str,
    member_id: str | None = None,
    *,
    expires_at: datetime | None = None,
    operator: bool = False,
) -> tuple[ApiKey, str]:
    """A new API key for a team (or one member of it), or an operator key (``operator``,
    ``team_id`` ""), valid until ``expires_at`` if given; returns the key and its secret."""
    now = clock.now()
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
        raise ValidationError("a key's expiry must be a future time with a time zone")
    if operator:
        if team_id or member_id:
            raise ValidationError("an operator key belongs to no team and no member")
    elif await store.get_team(team_id) is None:
        raise NotFound(f"team {team_id} does not exist")
    if member_id is not None:
        member = await store.get_member(member_id)
        if member is None or member.team_id != team_id:
            raise NotFound(f"member {member_id} does not exist in team {team_id}")
    secret = new_secret(KEY_PREFIX)
    key = ApiKey(
        new_id("key"),
        team_id,
        member_id,
        hash_secret(secret),
        secret[:10],
        now,
        expires_at,
        operator,
    )
    await store.create_api_key(key)
    return key, secret


async def keys_changed(store: Store) -> None:
    """Tell every process that access was taken away (a key revoked, a member
    deactivated): their key caches start over within ``EPOCH_CHECK`` seconds. The epoch
    is a fresh id, never a counter: two concurrent changes cannot write the same value."""
    await store.put_setting(EPOCH_SCOPE, {"epoch": new_id("epoch")})


async def revoke_key(store: Store, team_id: str, key_id: str) -> bool:
    """Revoke the team's key ``key_id`` (``team_id`` "": an operator key) on every
    process within a second; False when there is no such key."""
    if not await store.delete_api_key(team_id, key_id):
        return False
    await keys_changed(store)
    return True


class KeyCache:
    """Resolves bearer secrets to principals, caching hits for ``ttl`` seconds or until
    the store's epoch changes (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        ttl: float = 30.0,
        size: int = 10_000,
        clock: Clock | None = None,
        epoch_check: float = EPOCH_CHECK,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._hits: TtlCache[str, tuple[Principal, datetime | None]] = TtlCache(ttl, size)
        self._epoch_check = epoch_check
        self._monotonic = monotonic  # when to look at the epoch again (tests step it)
        self._epoch: object = None
        self._epoch_seen = -math.inf

    async def _follow_epoch(self) -> None:
        """Forget every cached key when access was taken away somewhere."""
        now = self._monotonic()
        if now - self._epoch_seen < self._epoch_check:
            return  # another request looked meanwhile
        self._epoch_seen = now  # one look per interval, however many requests arrive meanwhile
        try:
            doc = await self._store.get_setting(EPOCH_SCOPE)
        except BaseException:
            self._epoch_seen = -math.inf  # not seen: the next request looks again
            raise
        epoch = doc.get("epoch") if doc else None
        if epoch != self._epoch:
            self._hits.clear()
            self._epoch = epoch

    async def resolve(self, authorization: str | None, *, operator: bool = False) -> Principal:
        """The principal of an ``Authorization: Bearer <key>`` header, or ``Unauthorized``
        (also for an operator key where a team's is wanted); with ``operator`` only an
        operator key (``Forbidden`` for a team's or a member's)."""
        if not authorization:
            raise Unauthorized("missing Authorization header (use: Bearer <api key>)")
        scheme, _, secret = authorization.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized("the Authorization header must be: Bearer <api key>")
        if self._monotonic() - self._epoch_seen >= self._epoch_check:  # inline: every request
            await self._follow_epoch()
        hit = self._hits.get(secret)
        if hit is None:
            hit = await self._lookup(secret)
            self._hits.put(secret, hit)
        principal, expires_at = hit
        if expires_at is not None and self._clock.now() >= expires_at:
            raise Unauthorized("this API key has expired")
        if operator and not principal.operator:
            raise Forbidden(OPERATOR_ONLY)
        if principal.operator and not operator:
            # 401, as for any key that is not a team's: every team route documents it.
            raise Unauthorized("an operator key is not a team's key (it serves GET /v1/health)")
        return principal

    async def _lookup(self, secret: str) -> tuple[Principal, datetime | None]:
        key = await self._store.api_key_by_hash(hash_secret(secret))
        if key is None:
            raise Unauthorized("unknown API key")
        if key.member_id is not None:
            member = await self._store.get_member(key.member_id)
            if member is None or not member.active:
                raise Unauthorized("this API key's member is deactivated")
        principal = Principal(key.team_id, key.member_id, key.id, key.operator)
        return principal, key.expires_at
