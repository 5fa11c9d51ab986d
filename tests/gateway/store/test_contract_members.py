"""The Store contract for what a team admin changes: member activation and API keys
(both backends)."""

from __future__ import annotations

import pytest

from gateway.clock import FrozenClock
from gateway.errors import Forbidden
from gateway.ids import new_id
from gateway.models import ApiKey
from gateway.store.base import Store
from tests.gateway.store.test_contract import member, team

pytestmark = pytest.mark.anyio


async def test_member_activation_keeps_the_plan_cap(store: Store, clock: FrozenClock) -> None:
    t = team(clock)
    await store.create_team(t)
    a = member(clock, t.id, "+4915100000001")
    b = member(clock, t.id, "+4915100000002", active=False)
    await store.create_member(a, 1)
    await store.create_member(b, 1)
    with pytest.raises(Forbidden) as exc:
        await store.set_member_active(b.id, True, 1)
    assert exc.value.code == "plan_limit"
    off = await store.set_member_active(a.id, False, 1)
    assert off is not None and not off.active and off.addons == a.addons
    got = await store.get_member(a.id)
    assert got is not None and not got.active
    on = await store.set_member_active(b.id, True, 1)
    assert on is not None and on.active
    # Deactivating an inactive member and re-activating an active one change nothing.
    assert (await store.set_member_active(a.id, False, 1)) is not None
    assert (await store.set_member_active(b.id, True, 1)) is not None
    assert await store.set_member_active("mem_nobody", True, 1) is None
    # The freed slot is taken: the other member cannot come back now.
    with pytest.raises(Forbidden):
        await store.set_member_active(a.id, True, 1)


async def test_api_keys_are_listed_and_revoked_per_team(store: Store, clock: FrozenClock) -> None:
    keys = []
    for team_id, n in (("team_1", 1), ("team_1", 2), ("team_2", 3)):
        key = ApiKey(new_id("key"), team_id, None, f"hash{n}", f"gwk_{n}", clock.now())
        await store.create_api_key(key)
        keys.append(key)
    assert [k.id for k in await store.list_api_keys("team_1")] == [keys[0].id, keys[1].id]
    assert not await store.delete_api_key("team_2", keys[0].id)  # not that team's key
    assert await store.delete_api_key("team_1", keys[0].id)
    assert await store.api_key_by_hash("hash1") is None
    assert await store.api_key_by_hash("hash2") is not None
    assert not await store.delete_api_key("team_1", keys[0].id)
    assert [k.id for k in await store.list_api_keys("team_1")] == [keys[1].id]
    assert [k.id for k in await store.list_api_keys("team_2")] == [keys[2].id]
