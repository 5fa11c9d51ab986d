"""``PortalStore`` on Redis: keys beside the core's under ``{prefix}:portal:``, every
check-and-write one Lua script (``storage_redis_scripts.py`` lists the keys)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis

from gateway import jsoncodec
from gateway.errors import Conflict
from gateway.models import iso, parse_iso
from gateway.portal.storage import (
    SEARCH_KEEP,
    Account,
    Draft,
    InboxPage,
    InboxQuery,
    IndexChange,
    Invitation,
    Session,
    Summary,
)
from gateway.portal.storage_redis_scripts import SCRIPTS
from gateway.portal.storage_sqlite import make_cursor, split_cursor
from gateway.store.redis_backend import RedisBackend


def _s(value: str | bytes) -> str:
    """A reply as text (the client decodes already; the types allow bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


class RedisPortalStore:
    """The portal's keys in the store's Redis database."""

    def __init__(self, backend: RedisBackend) -> None:
        self._b = backend
        self.p = backend.key("portal", "")  # every key: {prefix}:portal:…

    @classmethod
    async def open(cls, backend: RedisBackend) -> RedisPortalStore:
        """The role on ``backend``, its scripts registered."""
        backend.register_scripts(SCRIPTS)
        return cls(backend)

    @property
    def client(self) -> aioredis.Redis:
        """The store's Redis client."""
        return self._b.client

    async def _call(self, name: str, *args: str | int) -> Any:
        return await self._b.call(name, [], [self.p, *args])

    # -- accounts -----------------------------------------------------------------------
    async def put_account(self, account: Account) -> None:
        """Create or replace the member's account (emails are unique)."""
        account.email = account.email.casefold()
        result = await self._call(
            "portal_put_account",
            account.member_id,
            account.email,
            jsoncodec.dumps(account.to_dict()),
            _ms(account.created_at),
        )
        if result == "email_taken":
            raise Conflict(
                f"{account.email} already signs in to the portal for another member",
                code="email_taken",
            )

    async def get_account(self, member_id: str) -> Account | None:
        """The member's account, or None."""
        raw = await self.client.get(f"{self.p}acct:{member_id}")
        return Account.from_dict(jsoncodec.loads(raw)) if raw else None

    async def account_by_email(self, email: str) -> Account | None:
        """The account with this email, or None."""
        member = await self.client.hget(f"{self.p}acct_email", email.strip().casefold())
        return await self.get_account(_s(member)) if member else None

    async def list_accounts(self, team_id: str) -> list[Account]:
        """The team's accounts, oldest first."""
        ids = await self.client.zrange(f"{self.p}acct_team:{team_id}", 0, -1)
        keys = [f"{self.p}acct:{_s(i)}" for i in ids if isinstance(i, str | bytes)]
        raws = await self.client.mget(keys) if keys else []
        return [Account.from_dict(jsoncodec.loads(r)) for r in raws if r]

    async def set_password(self, member_id: str, password_hash: str, now: datetime) -> bool:
        """New hash; every session of the member ends."""
        change = jsoncodec.dumps({"password_hash": password_hash, "password_changed_at": iso(now)})
        return bool(await self._call("portal_update_account", member_id, change, "1"))

    async def set_role(self, member_id: str, role: str) -> bool:
        """Change the member's role."""
        change = jsoncodec.dumps({"role": role})
        return bool(await self._call("portal_update_account", member_id, change, "0"))

    async def set_invitation(
        self, member_id: str, invitation: Invitation, *, if_job: str | None = None
    ) -> bool:
        """Record the latest invitation's state (see the protocol)."""
        change = jsoncodec.dumps({"invitation": invitation.to_dict()})
        return bool(
            await self._call("portal_update_account", member_id, change, "0", if_job or "")
        )

    # -- sessions -----------------------------------------------------------------------
    async def create_session(self, session: Session, replaces: str | None = None) -> None:
        """Store the session (it expires by itself); the replaced one ends."""
        await self._call(
            "portal_create_session",
            session.id,
            session.member_id,
            jsoncodec.dumps(session.to_dict()),
            max(1, _ms(session.expires_at) - _ms(session.created_at)),
            replaces or "",
        )

    async def get_session(self, session_id: str) -> Session | None:
        """The session, or None."""
        raw = await self.client.get(f"{self.p}sess:{session_id}")
        return Session.from_dict(jsoncodec.loads(raw)) if raw else None

    async def touch_session(self, session_id: str, now: datetime) -> None:
        """Record activity."""
        await self._call("portal_touch_session", session_id, iso(now))

    async def end_session(self, session_id: str) -> None:
        """End one session."""
        await self._call("portal_end_session", session_id)

    async def end_sessions(self, member_id: str) -> int:
        """End every session of the member."""
        return int(await self._call("portal_end_sessions", member_id))

    # -- sign-in throttling ---------------------------------------------------------------
    async def note_failure(self, keys: Sequence[str], now: datetime, window_s: int) -> None:
        """One failure under each key, the window trimmed."""
        at = _ms(now)
        async with self.client.pipeline(transaction=True) as pipe:
            for key in keys:
                k = f"{self.p}fail:{key}"
                pipe.zremrangebyscore(k, "-inf", at - window_s * 1000)
                pipe.zadd(k, {f"{at}:{os.urandom(6).hex()}": at})
                pipe.pexpire(k, window_s * 1000)
            await pipe.execute()

    async def failures(
        self, keys: Sequence[str], now: datetime, window_s: int
    ) -> dict[str, tuple[int, datetime | None]]:
        """Failures per key within the window, and the oldest."""
        since = f"({_ms(now) - window_s * 1000}"
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                k = f"{self.p}fail:{key}"
                pipe.zcount(k, since, "+inf")
                pipe.zrangebyscore(k, since, "+inf", start=0, num=1, withscores=True)
            replies = await pipe.execute()
        out: dict[str, tuple[int, datetime | None]] = {}
        for i, key in enumerate(keys):
            count, first = replies[2 * i], replies[2 * i + 1]
            oldest = datetime.fromtimestamp(first[0][1] / 1000, now.tzinfo) if first else None
            out[key] = (int(count), oldest)
        return out

    async def clear_failures(self, key: str) -> None:
        """Forget the key's failures."""
        await self.client.delete(f"{self.p}fail:{key}")

    # -- invitations ------------------------------------------------------------------------
    async def create_invite(
        self, token_hash: str, member_id: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a one-time invitation (the key also expires by itself)."""
        ttl = max(1, _ms(expires_at) - _ms(now))
        value = f"{member_id} {_ms(expires_at)}"
        await self.client.set(f"{self.p}inv:{token_hash}", value, px=ttl)

    @staticmethod
    def _valid(value: str | bytes | None, now: datetime) -> str | None:
        if not value:
            return None
        member, _, until = _s(value).partition(" ")
        return member if until.isdigit() and int(until) > _ms(now) else None

    async def take_invite(self, token_hash: str, now: datetime) -> str | None:
        """Use the invitation (once)."""
        return self._valid(await self.client.getdel(f"{self.p}inv:{token_hash}"), now)

    async def peek_invite(self, token_hash: str, now: datetime) -> str | None:
        """The invitation's member, if it is still valid."""
        return self._valid(await self.client.get(f"{self.p}inv:{token_hash}"), now)

    # -- drafts and read state ----------------------------------------------------------------
    async def put_draft(self, draft: Draft) -> None:
        """Keep (or, when empty, drop) the draft."""
        key = f"{self.p}draft:{draft.member_id}:{draft.conversation_id}"
        if not draft.text:
            await self.client.delete(key)
            return
        doc = {"text": draft.text, "channel": draft.channel, "updated_at": iso(draft.updated_at)}
        await self.client.set(key, jsoncodec.dumps(doc))

    async def get_draft(self, member_id: str, conversation_id: str) -> Draft | None:
        """The draft, or None."""
        raw = await self.client.get(f"{self.p}draft:{member_id}:{conversation_id}")
        if not raw:
            return None
        doc = jsoncodec.loads(raw)
        return Draft(
            member_id,
            conversation_id,
            doc["text"],
            doc.get("channel"),
            parse_iso(doc["updated_at"]),
        )

    async def mark_read(self, member_id: str, conversation_id: str) -> None:
        """Everything received so far is seen."""
        await self._call("portal_mark_read", member_id, conversation_id)

    # -- the inbox index -----------------------------------------------------------------------
    async def index_cursor(self) -> int:
        """The last event seq applied."""
        raw = await self.client.get(f"{self.p}idx")
        return int(raw) if raw else 0

    async def apply_index(self, after_seq: int, new_seq: int, changes: list[IndexChange]) -> bool:
        """Apply ``changes`` if the cursor is still ``after_seq``."""
        docs = [jsoncodec.dumps(c.to_dict()) for c in changes]
        return bool(await self._call("portal_apply_index", after_seq, new_seq, SEARCH_KEEP, *docs))

    async def get_summary(self, conversation_id: str, member_id: str) -> Summary | None:
        """The summary with the member's read state."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(f"{self.p}sum:{conversation_id}")
            pipe.hget(f"{self.p}read:{member_id}", conversation_id)
            raw, read = await pipe.execute()
        return Summary.from_dict(jsoncodec.loads(raw), int(read or 0)) if raw else None

    async def list_inbox(self, query: InboxQuery, cursor: str | None, limit: int) -> InboxPage:
        """One page of the member's conversations."""
        inbox = f"{self.p}inbox:{query.member_id}"
        # The smallest set that every match is in: walked, the others only looked up.
        if query.failed:
            primary = f"{inbox}:failed"
        elif query.unread:
            primary = f"{inbox}:unread"
        elif query.channel:
            primary = f"{inbox}:ch:{query.channel}"
        else:
            primary = inbox
        after = split_cursor(cursor)
        found = await self._call(
            "portal_list_inbox",
            query.member_id,
            primary,
            str(after[0]) if after else "",
            after[1] if after else "",
            limit,
            query.channel or "",
            "1" if query.unread else "0",
            "1" if query.failed else "0",
            query.search or "",
        )
        ids, raws, reads = found
        if not ids:
            return InboxPage([], None)
        items = [
            Summary.from_dict(jsoncodec.loads(raw), int(read or 0))
            for raw, read in zip(raws, reads, strict=True)
            if raw
        ]
        more = len(items) > limit
        items = items[:limit]
        return InboxPage(items, make_cursor(items[-1]) if more and items else None)

    async def unread_total(self, member_id: str) -> int:
        """Conversations with something unread."""
        return int(await self.client.zcard(f"{self.p}inbox:{member_id}:unread"))

    async def clear_failed(self, conversation_id: str, message_id: str) -> None:
        """The message no longer marks the conversation as failed."""
        await self._call("portal_clear_failed", conversation_id, message_id)
