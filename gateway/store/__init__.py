"""Storage backends behind one protocol; ``open_store`` picks one from a URL."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import ConfigError
from gateway.store.base import Store

# What a backend raises when its server cannot be reached right now (refused, reset, timed
# out, still loading its data after a restart): an outage to wait out, not a bug. The API
# answers it with 503 store_unavailable; a worker that already did its carrier's part
# keeps trying to record it.
UNAVAILABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)


def make_store(url: str) -> Store:
    """The store for ``url`` (``sqlite:///path`` or ``redis://host:port/db``), not yet open."""
    if url.startswith("sqlite://"):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(url)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from gateway.store.redis import RedisStore

        return RedisStore(url)
    raise ConfigError(f"gateway.store: unsupported store URL {url!r} (use sqlite:// or redis://)")


async def open_store(url: str) -> Store:
    """Make and open the store for ``url``."""
    store = make_store(url)
    await store.open()
    return store
