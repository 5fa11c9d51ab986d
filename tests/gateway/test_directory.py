"""The directory's caches: what is cached, for how long, and what a write in this process
makes visible at once."""

from __future__ import annotations

import pytest

from gateway.directory import Directory, TtlCache
from gateway.store.base import Store

pytestmark = pytest.mark.anyio


async def test_settings_absence_is_cached_and_own_writes_are_seen_at_once(store: Store) -> None:
    directory = Directory(store, ttl=60.0)
    assert await directory.setting("forwarding:mem_1") is None
    # Another process writes: this one keeps its cached answer until the TTL ends.
    await store.put_setting("forwarding:mem_1", {"email": ["a@example.com"]})
    assert await directory.setting("forwarding:mem_1") is None
    # A write through this directory is seen at once.
    await directory.put_setting("forwarding:mem_1", {"email": ["b@example.com"]})
    assert await directory.setting("forwarding:mem_1") == {"email": ["b@example.com"]}
    assert await store.get_setting("forwarding:mem_1") == {"email": ["b@example.com"]}


async def test_settings_are_read_again_after_the_ttl(store: Store) -> None:
    directory = Directory(store, ttl=0.0)
    assert await directory.setting("policy:team_1") is None
    await store.put_setting("policy:team_1", {"countries": ["DE"]})
    assert await directory.setting("policy:team_1") == {"countries": ["DE"]}


def test_ttl_cache_evicts_the_oldest_when_full() -> None:
    cache: TtlCache[str, int] = TtlCache(60.0, 2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
