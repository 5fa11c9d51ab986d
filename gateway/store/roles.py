"""Storage roles: how an extension keeps its own data in the gateway's store.

Public on purpose: extensions define their roles with :class:`Role` (and reach the backend
access of ``sqlite_engine.py`` and ``redis_backend.py``, public for the same reason).

A role is a Protocol that an extension owns (``webhooks.storage.WebhookStore``: endpoints
and deliveries), with one implementation per store backend. A :class:`Role` names it and
says how to open each implementation; the extension lists it in ``Extension.storage()``,
``Runtime.create`` opens it right after the store (``gateway.process.open_runtime`` passes
every installed extension's roles; tables created, scripts registered, before the first
request), and code gets the running store's implementation from its host:
``host.role(WEBHOOK_STORE)``. Tests open a role on a store themselves:
``await WEBHOOK_STORE.open(store)``; one contract suite runs against both implementations.

An implementation works with the store's backend access, so its data lives beside the
core's and its writes share the core's transactions and round trips (no second connection,
no extra commit):

* **SQLite**: the store's :class:`~gateway.store.sqlite_engine.Engine`. Create and migrate
  tables with ``await engine.migrate(name, steps)``; read on ``engine.conn``; write with
  ``await engine.write(work)`` — ``work(db)`` runs at once in this tick's transaction,
  in a savepoint of its own: all of it or nothing, durable when it returns. Table names
  carry the extension's name (``webhook_deliveries``).
* **Redis**: the store's :class:`~gateway.store.redis_backend.RedisBackend`. Register Lua
  scripts with ``backend.register_scripts(...)`` (names start with the extension's
  prefix), build keys with ``backend.key(...)`` (the store's prefix comes first; the rest
  must name no key of the core's, listed in ``redis.py``), run scripts with
  ``backend.call(...)`` or, for many small calls, ``backend.call_batched(...)``; read
  with ``backend.client``.

What must be atomic is one ``write`` (SQLite) or one script (Redis). The portal's sessions,
for example::

    class SessionStore(Protocol):           # portal/storage.py
        async def create(self, session: Session) -> None: ...

    async def _sqlite(engine: Engine) -> SessionStore:
        from portal.storage_sqlite import SqliteSessionStore  # opens: engine.migrate(...)
        return await SqliteSessionStore.open(engine)

    SESSION_STORE: Role[SessionStore] = Role("portal.sessions", sqlite=_sqlite, redis=_redis)

    # PortalExtension.storage() returns (SESSION_STORE,); a route: rt.role(SESSION_STORE)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from gateway.store.base import Store
from gateway.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from gateway.store.redis_backend import RedisBackend
    from gateway.store.sqlite_engine import Engine

R = TypeVar("R")


class Role(Generic[R]):
    """A storage role ``R`` (a Protocol): its name and how to open it on each backend.

    ``sqlite`` and ``redis`` open the implementation on the store's backend access (see the
    module docstring): they create what it needs (tables, scripts) and return it ready.
    """

    __slots__ = ("_redis", "_sqlite", "name")

    def __init__(
        self,
        name: str,
        *,
        sqlite: Callable[[Engine], Awaitable[R]],
        redis: Callable[[RedisBackend], Awaitable[R]],
    ) -> None:
        self.name = name
        self._sqlite = sqlite
        self._redis = redis

    def __repr__(self) -> str:
        return f"Role({self.name!r})"

    async def open(self, store: Store) -> R:
        """The implementation of this role on the open ``store``, ready to use."""
        if isinstance(store, SqliteStore):
            return await self._sqlite(store.engine)
        # Imported here: a SQLite gateway never loads the Redis client.
        from gateway.store.redis import RedisStore

        if isinstance(store, RedisStore):
            return await self._redis(store.backend)
        raise TypeError(f"storage role {self.name!r}: no implementation for {type(store)!r}")
