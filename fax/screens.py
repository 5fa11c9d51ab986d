"""The halftone screens a fax page's tones are drawn with, and what each costs in G4.

Two screens, both ordered (a pixel's colour depends only on its grey and its place, so a
flat tone gives a regular pattern that G4 codes compactly):

* **The clustered dot** (``screen``): an ordered dot in a brick pattern, cells 8 x 4 at
  fine and 8 x 2 at standard, so the dots sit on a ~45 degree lattice of about 36 lines
  per inch with 33 and 17 grey levels. G4 codes a run boundary that sits under one in the
  previous row in one to three bits, and short, wide dots keep most boundaries like that:
  a screened photo costs a fraction of Floyd-Steinberg's bytes, about half a bit per
  pixel whatever its tone. Photos and tints that no line screen holds use it.
* **The line screen** (``line_rows``): ``k`` black rows in every ``period`` (at most 5
  rows at fine, 3 at standard). A line across a fill is one horizontal-mode code and the
  white rows between cost nothing, so a tint drawn this way costs a tenth of the dot's
  bytes or less; it holds only the tones ``k / period`` reaches (20 %, 25 %, 33 %, 40 %,
  50 %, 60 %, 67 %, 75 %, 80 % ink at fine), each within ``LINE_TOLERANCE`` grey levels.
  Both screens are fine enough that the eye, at reading distance, sees their mean tone.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

Grey = NDArray[np.uint8]

LINE_TOLERANCE = 4  # grey levels a line screen may be off the tone it stands for
FINE_MIN_YDPI = 150  # at or above: fine resolution (196 lpi); below: standard (98)


@lru_cache(maxsize=4)
def _cell(cell_w: int, cell_h: int) -> Grey:
    """Thresholds of one brick tile (two rows of cells, the second shifted by half a cell):
    a pixel stays white while the grey is at least its threshold. Dots grow from the cell
    centres as ellipses the shape of the cell."""
    tile_h = cell_h * 2
    yy, xx = np.mgrid[0:tile_h, 0:cell_w].astype(np.float64)
    dist = np.full(yy.shape, np.inf)
    for row in range(-1, 3):
        shift = cell_w / 2 if row % 2 else 0.0
        for col in range(-2, 3):
            cx = (cell_w - 1) / 2 + col * cell_w + shift
            cy = (cell_h - 1) / 2 + row * cell_h
            dist = np.minimum(dist, ((xx - cx) / cell_w) ** 2 + ((yy - cy) / cell_h) ** 2)
    # Each dot covers half the tile: rank pixels by distance within their own dot.
    key = dist + 1e-6 * xx + 1e-9 * yy
    order = np.argsort(key, axis=None, kind="stable")
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size) // 2  # the two dots of a tile grow together
    per_dot = order.size // 2
    thresholds = np.round(255 * (1 - (rank + 0.5) / per_dot)).clip(1, 255)
    return thresholds.reshape(yy.shape).astype(np.uint8)


@lru_cache(maxsize=8)
def screen(height: int, width: int, ydpi: int) -> Grey:
    """The clustered dot's threshold plane of a whole page (cached: pages share a size)."""
    cell = _cell(8, 4) if ydpi >= FINE_MIN_YDPI else _cell(8, 2)
    reps = (-(-height // cell.shape[0]), -(-width // cell.shape[1]))
    plane = np.tile(cell, reps)[:height, :width]
    plane.setflags(write=False)
    return plane


@lru_cache(maxsize=2)
def line_screens(ydpi: int) -> tuple[tuple[int, int], ...]:
    """The line screens ``(k, period)`` usable at this resolution, one per tone they reach
    (of equal tones the longer period: rows that repeat the previous one cost least)."""
    longest = 5 if ydpi >= FINE_MIN_YDPI else 3
    by_tone: dict[float, tuple[int, int]] = {}
    for period in range(2, longest + 1):
        for k in range(1, period):
            by_tone[round(255 * (1 - k / period), 6)] = (k, period)
    return tuple(sorted(by_tone.values(), key=lambda kp: kp[0] / kp[1]))


@lru_cache(maxsize=2)
def line_levels(ydpi: int) -> tuple[tuple[int, int], ...]:
    """For each line screen (in ``line_screens`` order) the grey levels ``(lo, hi)`` it
    stands for: those within ``LINE_TOLERANCE`` of its tone (nearer to it than to any
    other line screen's)."""
    screens = line_screens(ydpi)
    tones = np.array([255 * (1 - k / period) for k, period in screens])
    owner = np.full(256, -1)
    for level in range(256):
        nearest = int(np.argmin(np.abs(tones - level)))
        if abs(tones[nearest] - level) <= LINE_TOLERANCE:
            owner[level] = nearest
    out = []
    for index in range(len(screens)):
        levels = np.flatnonzero(owner == index)
        out.append((int(levels.min()), int(levels.max())) if levels.size else (1, 0))
    return tuple(out)


def line_rows(index: int, rows: slice, ydpi: int) -> NDArray[np.bool_]:
    """Which page rows of ``rows`` line screen ``index`` leaves white (a column vector)."""
    k, period = line_screens(ydpi)[index]
    y = np.arange(rows.start, rows.stop)
    white: NDArray[np.bool_] = (y % period >= k)[:, None]
    return white


def lines_for(counts: NDArray[np.int64], ydpi: int) -> list[int]:
    """The line screens (indices) that the fill greys counted in ``counts`` (a histogram
    of 256 levels) need."""
    return [index for index, (lo, hi) in enumerate(line_levels(ydpi))
            if lo <= hi and counts[lo : hi + 1].any()]  # fmt: skip


def tint(page: Grey, rows: slice, cols: slice, ydpi: int,
         lines: Iterable[int]) -> NDArray[np.bool_]:  # fmt: skip
    """The screened tint of the page's ``rows`` x ``cols`` (slices with start and stop):
    True where white. Tones a line screen of ``lines`` (indices) holds get it, every
    other tone the clustered dot."""
    grey = page[rows, cols]
    white: NDArray[np.bool_] = grey >= screen(page.shape[0], page.shape[1], ydpi)[rows, cols]
    levels = line_levels(ydpi)
    for index in lines:
        lo, hi = levels[index]
        where = (grey >= lo) & (grey <= hi)
        np.copyto(white, line_rows(index, rows, ydpi), where=where)
    return white
