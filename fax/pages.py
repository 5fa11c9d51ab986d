"""Fax page geometry: resolutions, the 1728-pixel line, and where a source page goes on it.

A fax line is 1728 pixels (215 mm). Standard paper (A4, Letter, Legal: 7.9-8.9 in wide once
portrait) fills the line and keeps its true length at the vertical resolution, so A4 is
1728 x 2292 (fine) and Letter 1728 x 2156, as fax machines print them. Any other size is
fitted, aspect kept, into an A4 frame (1728 x 2292 fine). Landscape pages are turned a
quarter counter-clockwise first (their top ends up on the left, as printers do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FAX_WIDTH = 1728
X_DPI = 204
A4_IN = (210 / 25.4, 297 / 25.4)
# Portrait widths (inches) treated as standard paper: A4 8.27, Letter/Legal 8.5.
STANDARD_WIDTHS = (7.9, 8.9)


@dataclass(frozen=True)
class Resolution:
    """A T.30 resolution: 204 dpi across, ``ydpi`` lines per inch down the page."""

    name: str
    ydpi: int

    @property
    def dpi(self) -> tuple[int, int]:
        """The (x, y) resolution written in the TIFF."""
        return (X_DPI, self.ydpi)


FINE = Resolution("fine", 196)
STANDARD = Resolution("standard", 98)
RESOLUTIONS = {r.name: r for r in (FINE, STANDARD)}


def resolution(name: str | Resolution) -> Resolution:
    """The resolution called ``name`` ("fine" or "standard")."""
    if isinstance(name, Resolution):
        return name
    try:
        return RESOLUTIONS[name]
    except KeyError:
        raise ValueError(f"unknown fax resolution {name!r} (fine or standard)") from None


@dataclass(frozen=True)
class Placement:
    """A fax page ``width`` x ``height`` pixels holding the source page, turned when
    ``rotate``, in the box ``(x, y, w, h)``."""

    width: int
    height: int
    x: int
    y: int
    w: int
    h: int
    rotate: bool


def a4_rows(res: Resolution) -> int:
    """Rows of an A4 page at ``res`` (2292 fine, 1146 standard)."""
    return round(A4_IN[1] * res.ydpi)


def place(width_in: float, height_in: float, res: Resolution, *, paper: bool = True) -> Placement:
    """Where a source page of ``width_in`` x ``height_in`` inches goes on a fax page;
    ``paper=False`` (a picture of unknown size: only the aspect counts) always fits it into
    the A4 frame."""
    if not (width_in > 0 and height_in > 0 and math.isfinite(width_in * height_in)):
        raise ValueError(f"bad page size {width_in} x {height_in} in")
    rotate = width_in > height_in
    if rotate:
        width_in, height_in = height_in, width_in
    if paper and STANDARD_WIDTHS[0] <= width_in <= STANDARD_WIDTHS[1]:
        rows = max(1, round(height_in * res.ydpi))
        return Placement(FAX_WIDTH, rows, 0, 0, FAX_WIDTH, rows, rotate)
    scale = min(A4_IN[0] / width_in, A4_IN[1] / height_in)
    w = max(1, min(FAX_WIDTH, round(width_in * scale / A4_IN[0] * FAX_WIDTH)))
    h = max(1, min(a4_rows(res), round(height_in * scale * res.ydpi)))
    return Placement(FAX_WIDTH, a4_rows(res), (FAX_WIDTH - w) // 2, 0, w, h, rotate)
