"""One Redis database as the stores use it: the client, the key prefix, the Lua scripts and
the lane that pipelines script calls.

``RedisStore`` (``redis.py``) keeps the core's data through it. Public on purpose: the Redis
implementations of extensions' storage roles (``gateway/store/roles.py``) get the store's
``RedisBackend``, register their scripts with :meth:`RedisBackend.register_scripts`, name
their keys with :meth:`RedisBackend.key`, and call their scripts with
:meth:`RedisBackend.call` (a round trip of its own) or :meth:`RedisBackend.call_batched`
(sharing the core's batched, pipelined round trips, ``redis_lane.py``).

Each script is atomic on its own, and it may touch only the keys it is given; one Redis node
serves every key (no Cluster), so a script may span the core's keys and an extension's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis

from gateway.store.redis_lane import Lane


class RedisBackend:
    """The client, prefix, scripts and lane of one ``redis://…?prefix=P`` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        # Every key starts with "{prefix}:", so several gateways (or test cases) can share
        # one database.
        self.prefix = dict(query).get("prefix") or "gw"
        # redis-py turns unknown query parameters into client options: drop ours.
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        self._client_url = urlunsplit(parts._replace(query=rest))
        self._client: aioredis.Redis | None = None
        # Shared with the lane: a script registered later is found by name there too, and
        # reloaded with the others when Redis lost them (NOSCRIPT).
        self._scripts: dict[str, Any] = {}
        self._lane: Lane | None = None

    async def open(self, scripts: Mapping[str, str]) -> None:
        """Connect, check that the server answers and register ``scripts`` (name → Lua)."""
        # A blocking pool makes a burst of calls wait for a connection; the default pool
        # raises MaxConnectionsError past 100 (``?max_connections=`` sets the size).
        pool = aioredis.BlockingConnectionPool.from_url(self._client_url, decode_responses=True)
        client = aioredis.Redis.from_pool(pool)
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self.register_scripts(scripts)
        self._lane = Lane(client, self._scripts)

    async def aclose(self) -> None:
        """Close the connection pool (after the calls already sent)."""
        if self._lane is not None:
            await self._lane.aclose()
            self._lane = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> aioredis.Redis:
        """The client (``decode_responses=True``: replies are ``str``)."""
        if self._client is None:
            raise RuntimeError("store is not open")
        return self._client

    @property
    def lane(self) -> Lane:
        """The batched, pipelined script calls (see :meth:`call_batched`)."""
        if self._lane is None:
            raise RuntimeError("store is not open")
        return self._lane

    def key(self, *parts: str) -> str:
        """The key ``{prefix}:part:part…``."""
        return ":".join((self.prefix, *parts))

    def register_scripts(self, scripts: Mapping[str, str]) -> None:
        """Make ``scripts`` (name → Lua source) callable by name; registering the same
        source again is a no-op, another source under a taken name a ``ValueError``
        (extensions prefix their names, e.g. ``wh_``)."""
        client = self.client
        for name, source in scripts.items():
            known = self._scripts.get(name)
            if known is None:
                # EVALSHA, loading the script again if the server lost it (restart, FLUSH).
                self._scripts[name] = client.register_script(source)
            elif known.script != source:
                raise ValueError(f"the Redis script name {name!r} is taken by another script")

    # Both return the call's awaitable itself (no coroutine of their own around it).
    def call(self, name: str, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        """Run script ``name`` in a round trip of its own; awaiting gives its reply."""
        return cast(Awaitable[Any], self._scripts[name](keys=keys, args=args))

    def call_batched(self, name: str, keys: list[str], args: list[str | int]) -> Awaitable[Any]:
        """Like :meth:`call`, but the calls of one loop tick share one round trip,
        pipelined on the lane's connection (each script stays atomic on its own). For
        many small calls: the round trip, not Redis, is their cost."""
        return self.lane.call(name, keys, args)
