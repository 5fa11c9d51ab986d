"""The portal's storage role opened on the running store (SQLite or Redis)."""

from __future__ import annotations

from gateway.portal.storage import PortalStore
from gateway.store.base import Store


async def open_portal_store(store: Store) -> PortalStore:
    """The ``PortalStore`` implementation of ``store``'s backend, its tables created."""
    from gateway.store.sqlite import SqliteStore

    if isinstance(store, SqliteStore):
        from gateway.portal.storage_sqlite import SqlitePortalStore

        return await SqlitePortalStore.open(store._engine)
    from gateway.store.redis import RedisStore

    if isinstance(store, RedisStore):
        from gateway.portal.storage_redis import RedisPortalStore

        return await RedisPortalStore.open(store._r, store.prefix)
    raise TypeError(f"the portal has no storage for {type(store).__name__}")
