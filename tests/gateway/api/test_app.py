"""The app object itself: what its lifespan does to the process."""

from __future__ import annotations

import gc

import pytest

from gateway.api.app import GC_THRESHOLD, create_app
from gateway.runtime import Runtime

pytestmark = pytest.mark.anyio


async def test_serving_tunes_the_collector_and_restores_it(rt: Runtime) -> None:
    """While the app serves, gen-0 collections wait for GC_THRESHOLD allocations and the
    startup heap is frozen; afterwards the process is as it was."""
    app = create_app(rt, workers=False)
    before = gc.get_threshold()
    assert before[0] != GC_THRESHOLD
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == (GC_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
