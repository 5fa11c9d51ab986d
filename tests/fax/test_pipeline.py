"""Pages G4-coded on a second thread come back complete, in order, the same as coded at once;
a coding failure is raised in the conversion's thread."""

from __future__ import annotations

import numpy as np
import pytest

from fax import pipeline, tiff


def page(n: int) -> np.ndarray:
    """Page ``n``: a black bar ``n`` rows down (packed, 1 bits black)."""
    black = np.zeros((60, 1728), np.bool_)
    black[n : n + 3, 100 : 300 + 20 * n] = True
    return np.packbits(black, axis=1)


@pytest.mark.parametrize("threaded", [True, False])
def test_pages_come_back_in_order(threaded: bool) -> None:
    with pipeline.Coder(threaded) as coder:
        for n in range(12):
            coder.add(page(n), 1728)
        assert coder.pages == 12
        strips = coder.strips()
    assert strips == [(1728, 60, tiff.g4_code(page(n), 1728)) for n in range(12)]


def test_a_coding_failure_reaches_the_caller_and_nothing_hangs() -> None:
    with pytest.raises(ValueError, match="packed rows"), pipeline.Coder(True) as coder:
        coder.add(page(1), 1728)
        coder.add(np.zeros((5, 3), np.uint8), 1728)  # not 216 bytes a row
        for n in range(10):  # more pages than the queue holds: add must not block
            coder.add(page(n), 1728)
        coder.strips()


def test_an_error_in_the_caller_stops_the_coder_thread() -> None:
    coder = pipeline.Coder(True)
    with pytest.raises(RuntimeError, match="drawing failed"), coder:
        coder.add(page(0), 1728)
        raise RuntimeError("drawing failed")
    assert coder._thread is None  # joined


@pytest.mark.parametrize(("load", "cpus", "idle"), [(0.4, 2, True), (1.0, 2, True),
                                                    (1.6, 2, False), (3.0, 4, True),
                                                    (0.0, 1, False)])  # fmt: skip
def test_a_second_thread_only_when_a_core_is_idle(monkeypatch: pytest.MonkeyPatch, load: float,
                                                  cpus: int, idle: bool) -> None:  # fmt: skip
    from fax import documents

    monkeypatch.setattr(documents.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(documents.os, "cpu_count", lambda: cpus)
    assert documents._idle_core() is idle
