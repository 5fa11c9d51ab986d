"""``Coordination`` on both backends (SQLite: this process's memory; Redis: shared by
every process on it, on the server's clock): slots, rates, values, part sets."""

from __future__ import annotations

import asyncio

import pytest

from gateway.coordination import Coordination, LocalCoordination
from gateway.store.base import Store

pytestmark = pytest.mark.anyio
SHORT = 0.05  # a lease or lifetime the test waits out


@pytest.fixture
def co(store: Store) -> Coordination:
    return store.coordination()


async def test_slots_are_held_up_to_their_count(co: Coordination) -> None:
    assert await co.claim_slot("smpp:a", 2, "p1", 30) == 0
    assert await co.claim_slot("smpp:a", 2, "p2", 30) == 1
    assert await co.claim_slot("smpp:a", 2, "p3", 30) is None
    assert await co.slots_held("smpp:a", 2) == 2
    assert await co.claim_slot("smpp:b", 2, "p3", 30) == 0  # another name, its own slots
    assert await co.renew_slot("smpp:a", 0, "p1", 30)
    assert not await co.renew_slot("smpp:a", 0, "p2", 30)  # not its slot
    await co.release_slot("smpp:a", 0, "p2")  # not its slot: nothing happens
    assert await co.slots_held("smpp:a", 2) == 2
    await co.release_slot("smpp:a", 0, "p1")
    assert await co.slots_held("smpp:a", 2) == 1
    assert await co.claim_slot("smpp:a", 2, "p3", 30) == 0


async def test_a_slot_whose_holder_stops_renewing_is_taken_over(co: Coordination) -> None:
    assert await co.claim_slot("smpp:a", 1, "dead", SHORT) == 0
    assert await co.claim_slot("smpp:a", 1, "p2", 30) is None
    await asyncio.sleep(SHORT * 3)
    assert await co.slots_held("smpp:a", 1) == 0
    assert await co.claim_slot("smpp:a", 1, "p2", 30) == 0
    assert not await co.renew_slot("smpp:a", 0, "dead", 30)  # the old holder lost it


async def test_rate_spaces_sends_after_a_burst(co: Coordination) -> None:
    waits = [await co.reserve("wa:1", 10.0, 2) for _ in range(4)]
    assert waits[0] == 0 and waits[1] == 0  # the burst
    assert 0.05 < waits[2] <= 0.1 and 0.15 < waits[3] <= 0.2  # then 1/rate apart
    assert await co.reserve("wa:2", 10.0, 2) == 0  # another name


async def test_push_back_holds_every_sender(co: Coordination) -> None:
    await co.push_back("wa:1", 5.0, 100.0, 1)
    wait = await co.reserve("wa:1", 100.0, 1)
    assert 4.9 < wait <= 5.0


async def test_values_expire(co: Coordination) -> None:
    await co.put("pair:a", "2|123", 30)
    await co.put("pair:b", "1|1", SHORT)
    assert await co.get("pair:a") == "2|123"
    await asyncio.sleep(SHORT * 3)
    assert await co.get("pair:b") is None
    await co.delete("pair:a")
    assert await co.get("pair:a") is None


async def test_parts_complete_once_wherever_they_arrive(co: Coordination) -> None:
    assert await co.add_part("c1|x", 2, 3, "b", 60) == ("held", None)
    assert await co.add_part("c1|x", 2, 3, "b", 60) == ("held", None)  # a redelivery
    assert await co.add_part("c1|x", 1, 3, "a", 60) == ("held", None)
    state, whole = await co.add_part("c1|x", 3, 3, "c", 60)
    assert state == "complete" and whole is not None
    assert (whole.total, whole.parts) == (3, {1: "a", 2: "b", 3: "c"})
    assert await co.add_part("c1|x", 3, 3, "c", 60) == ("held", None)  # not handed out twice
    await co.finish_parts(whole, 60)
    assert await co.add_part("c1|x", 2, 3, "b", 60) == ("duplicate", None)
    assert await co.expired_parts("c1|", 0, 10) == []


async def test_incomplete_parts_expire_to_one_caller(co: Coordination) -> None:
    await co.add_part("c1|y", 1, 3, "a", 60)
    await co.add_part("c2|z", 1, 2, "q", 60)
    assert await co.expired_parts("c1|", 30, 10) == []  # not old enough
    await asyncio.sleep(SHORT)
    [late] = await co.expired_parts("c1|", SHORT / 2, 10)  # only its own prefix
    assert (late.name, late.total, late.parts) == ("c1|y", 3, {1: "a"})
    assert await co.expired_parts("c1|", SHORT / 2, 10) == []  # handed out once
    await co.return_parts(late)  # its delivery failed: swept again
    [again] = await co.expired_parts("c1|", SHORT / 2, 10)
    assert again.parts == {1: "a"}
    await co.finish_parts(again, 60)
    assert await co.add_part("c1|y", 2, 3, "b", 60) == ("late", None)  # it lacked part 2


async def test_local_coordination_on_an_injected_clock() -> None:
    now = [100.0]
    co = LocalCoordination(lambda: now[0])
    assert await co.claim_slot("s", 1, "a", 10) == 0
    now[0] += 10
    assert await co.claim_slot("s", 1, "b", 10) == 0  # the lease ran out
    await co.put("v", "x", 5)
    now[0] += 5
    assert await co.get("v") is None
