"""Faults around webhook delivery, on both stores: a developer's receiver down for ten
minutes (on the frozen clock: the test takes seconds), and the engine's loops while the
store itself is down.

After the receiver comes back every event is delivered exactly once, with its original
``webhook-id``, in its conversation's order, after retries that keep to the configured
schedule (each wait one of its delays, none past its longest), and the time from the
receiver's return to the last delivery is bounded by the schedule's delay at that point.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import pytest

from gateway.clock import FrozenClock
from gateway.models import parse_iso
from gateway.retry import FAILING_WAIT_MAX
from gateway.runtime import Runtime
from tests.webhooks.conftest import add_endpoint, add_events, hooks, settle
from tests.webhooks.receiver import Receiver
from webhooks.delivery import Engine, delivery_id
from webhooks.settings import DEFAULT_RETRY_SCHEDULE

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
TEAM = "team_a"
DOWN = timedelta(minutes=10)


def msg_event(conv: str, n: int) -> tuple[str, dict[str, object]]:
    return "message.received", {"id": f"msg_{n}", "conversation_id": conv, "text": f"n{n}"}


async def test_a_receiver_down_for_ten_minutes_gets_everything_afterwards(
    rt: Runtime, engine: Engine, clock: FrozenClock
) -> None:
    receiver = Receiver()
    port = receiver.port
    receiver.close()  # down: nothing listens, every attempt is refused
    endpoint = await add_endpoint(rt, TEAM, f"http://127.0.0.1:{port}/hook")
    start = clock.now()
    specs = [msg_event(f"conv_{c}", 3 * c + i) for c in range(3) for i in range(3)]
    specs += [("forward.sent", {"message_id": f"msg_f{i}", "via": "email"}) for i in range(2)]
    events = await add_events(rt, TEAM, *specs)
    ids = {delivery_id(e.id, endpoint.id): e for e in events}

    back = None
    for _ in range(200):  # each round: attempts due now, then the clock to the next due
        await settle(engine)
        page = await hooks(rt).list_deliveries(endpoint.id, "pending", None, 100)
        if not page.items:
            break
        due = [d.due_at for d in page.items if d.due_at is not None]
        assert due, "pending deliveries with nothing due: a lane is stuck"
        up_at = start + DOWN
        nxt = min(due)
        if back is None and nxt >= up_at:
            clock.set(up_at)
            back = Receiver(port)  # the receiver comes back at 10 minutes
            continue
        clock.set(max(nxt, clock.now()))
    assert back is not None
    try:
        got = list(back.received)
    finally:
        back.close()

    # Exactly once each, with the webhook-id of the first attempt, 2xx.
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(ids)
    # Conversation order kept.
    for c in range(3):
        seen = [r.json()["data"]["id"] for r in got if r.json()["data"].get("conversation_id")
                == f"conv_{c}"]  # fmt: skip
        assert seen == [f"msg_{3 * c + i}" for i in range(3)]
    schedule = DEFAULT_RETRY_SCHEDULE
    up = start + DOWN
    finished: list[datetime] = []
    for wid in ids:
        d = await hooks(rt).get_delivery(wid)
        assert d is not None and d.status == "succeeded", d
        times = [parse_iso(a["at"]) for a in d.log]
        assert [a["error"] is None for a in d.log] == [False] * (len(times) - 1) + [True]
        # Each wait is the schedule's delay for that attempt (never longer than its
        # longest), and the attempt that succeeded was the first one after the receiver
        # came back.
        waits = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert waits == [schedule[n] for n in range(1, len(times))]
        assert max(waits, default=0) <= max(schedule)
        assert all(t < up for t in times[:-1]) and times[-1] >= up
        finished.append(times[-1])
    # Recovery: bounded by the delay the schedule had reached (5 min -> 30 min) plus the
    # lane followers, which go at once after their head.
    recovery = (max(finished) - up).total_seconds()
    assert recovery <= schedule[3], recovery
    endpoint_now = await hooks(rt).get_endpoint(endpoint.id)
    assert endpoint_now is not None and endpoint_now.enabled


async def test_the_engine_does_not_hammer_a_store_that_is_down(
    rt: Runtime, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the store is down the fan-out and due loops back off (they tried every 20 ms,
    logging a traceback each time), and they carry on once it is back."""
    calls = {"fanout": 0, "due": 0}
    down = True

    def failing(name: str) -> object:
        async def step() -> int:
            calls[name] += 1
            if down:
                raise ConnectionError("store down")
            return 0

        return step

    monkeypatch.setattr(engine, "fanout_once", failing("fanout"))
    monkeypatch.setattr(engine, "deliver_due", failing("due"))
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    await asyncio.sleep(1.0)
    during = dict(calls)
    down = False

    # Back within the longest wait (FAILING_WAIT_MAX): both loops try again and go on.
    def both_again() -> bool:
        return calls["fanout"] > during["fanout"] + 1 and calls["due"] > during["due"] + 1

    async with asyncio.timeout(FAILING_WAIT_MAX + 2):
        while not both_again():  # noqa: ASYNC110  (counters: no event to wait on)
            await asyncio.sleep(0.05)
    stop.set()
    await task
    # 20 ms apart that would be ~50 calls per loop in a second; backing off 20, 40, 80 …
    # ms it is at most 6.
    assert 1 <= during["fanout"] <= 7 and 1 <= during["due"] <= 7, during
