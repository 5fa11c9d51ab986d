"""A document's pages drawn and G4-coded at the same time, on two threads.

Drawing (PDFium) and coding (libtiff) are both C calls made through ctypes, which lets go
of the GIL for the call: while the conversion's thread draws and screens page n+1, a
coder thread codes page n. A long document then takes about the longer of the two stages
per page instead of their sum when the machine has a core to spare, and costs no more
CPU time than one thread (no second process, no memory copied). Between the two, a queue
holds at most ``QUEUE_PAGES`` packed pages (~0.5 MB each), so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType

import numpy as np

from fax import tiff

QUEUE_PAGES = 2
Strip = tuple[int, int, bytes]  # width, height, G4 code


class Coder:
    """G4-codes the pages given to ``add``, in order, on its own thread when ``threaded``
    (else at once); ``strips()`` waits for all of them. Use it as a context manager."""

    def __init__(self, threaded: bool) -> None:
        self._strips: list[Strip] = []
        self._error: BaseException | None = None
        self._count = 0
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(QUEUE_PAGES)
            self._thread = threading.Thread(target=self._run, name="g4-coder", daemon=True)
            self._thread.start()

    @property
    def pages(self) -> int:
        """How many pages were given so far."""
        return self._count

    def add(self, packed: np.ndarray, width: int) -> None:
        """A page packed for G4 (``fax.halftone.black_bits``), ``width`` pixels a row."""
        self._raise()
        self._count += 1
        if self._queue is None:
            self._strips.append(_code(packed, width))
        else:
            self._queue.put((packed, width))

    def strips(self) -> list[Strip]:
        """Every page's ``(width, height, code)``, in the order given."""
        self._stop()
        self._raise()
        return self._strips

    def _run(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking pages, so that ``add`` never blocks for ever
            try:
                self._strips.append(_code(*item))
            except BaseException as exc:  # handed to the conversion's thread
                self._error = exc

    def _stop(self) -> None:
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Coder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._stop()


def _code(packed: np.ndarray, width: int) -> Strip:
    return width, packed.shape[0], tiff.g4_code(packed, width)
