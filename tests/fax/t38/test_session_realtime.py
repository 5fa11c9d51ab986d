"""The same exchange against the real clock: the shared 20 ms ticker paces both sessions."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fax.t38.ticker import MediaTicker
from tests.fax.t38.support import assert_same_pages, run_pair

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_t38_fax_in_real_time(tmp_path: Path) -> None:
    ticker = MediaTicker.shared()
    start = time.monotonic()
    pair = await run_pair(tmp_path, kind="t38", ecm=True, fine=True)
    wall = time.monotonic() - start

    assert pair.sender.success, pair.sender
    assert pair.receiver.success, pair.receiver
    assert_same_pages(pair.sent, pair.received)
    # Paced by the loop clock: the session time is the wall time it took, not faster.
    assert pair.sender.duration == pytest.approx(wall, abs=1.0)
    assert ticker.ticks > 0.9 * pair.sender.duration * 50
