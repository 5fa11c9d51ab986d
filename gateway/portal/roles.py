"""The portal's storage role, ``PORTAL_STORE``: ``PortalStore`` (``storage.py``) with one
implementation per store backend, opened by ``Runtime.create`` (the portal extension
lists it) and handed out by ``rt.role(PORTAL_STORE)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.portal.storage import PortalStore
from gateway.store.roles import Role

if TYPE_CHECKING:
    from gateway.store.redis_backend import RedisBackend
    from gateway.store.sqlite_engine import Engine


async def _open_sqlite(engine: Engine) -> PortalStore:
    from gateway.portal.storage_sqlite import SqlitePortalStore

    return await SqlitePortalStore.open(engine)


async def _open_redis(backend: RedisBackend) -> PortalStore:
    from gateway.portal.storage_redis import RedisPortalStore

    return await RedisPortalStore.open(backend)


# Imported lazily by the openers: a SQLite gateway never loads the Redis implementation.
PORTAL_STORE: Role[PortalStore] = Role("portal", sqlite=_open_sqlite, redis=_open_redis)
