"""Lossy network: 5 % random UDPTL loss plus reordering, ECM and redundancy 3."""

from __future__ import annotations

from pathlib import Path

import pytest

from fax.t38.params import T38Params
from fax.t38.session import T38Session
from fax.t38.ticker import SimulatedTicker
from tests.fax.t38.support import LossyRelay, assert_same_pages, run_pair

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_ecm_and_redundancy_deliver_identical_pages(tmp_path: Path, seed: int) -> None:
    relay = LossyRelay(loss=0.05, reorder=0.05, seed=seed)
    pair = await run_pair(
        tmp_path,
        ecm=True,
        ticker=SimulatedTicker(),
        relay=relay,
        t38=T38Params(redundancy=3),
    )

    assert relay.error is None
    assert relay.dropped > 5 and relay.delayed > 5, (relay.dropped, relay.delayed)
    assert pair.sender.success, pair.sender
    assert pair.receiver.success, pair.receiver
    assert pair.receiver.bad_rows == 0
    recovered = sum(s.receiver.recovered for s in pair.sessions if isinstance(s, T38Session))
    assert recovered > 0
    assert_same_pages(pair.sent, pair.received)


async def test_heavy_loss_without_redundancy_is_noticed(tmp_path: Path) -> None:
    """The control case: the same loss without any redundancy breaks the fax or its pages."""
    relay = LossyRelay(loss=0.05, reorder=0.05, seed=1)
    pair = await run_pair(
        tmp_path,
        ecm=False,
        ticker=SimulatedTicker(),
        relay=relay,
        t38=T38Params(udp_ec="none"),
    )

    lost = sum(s.receiver.lost for s in pair.sessions if isinstance(s, T38Session))
    assert lost > 0
    assert not pair.sender.success or pair.receiver.bad_rows > 0 or not pair.receiver.success
