"""Grey page -> 1-bit fax page: text and line art thresholded, tone regions screened.

Every page is classified in 16 x 16 blocks on a half-size copy. Tone evidence is a pixel
in the mid-tones (16-200) whose neighbours differ by little: photographs and solid grey
fills are full of them, while anti-aliased text only has mid-tones on its edges, where the
gradient is steep. Blocks rich in evidence are joined (a closing on the block grid), each
group's bounding box becomes a tone region, and those regions get a clustered-dot screen;
everything else is thresholded, which also whitens light grey backgrounds (lighter than
the threshold) and keeps small text on them crisp.

The screen is an ordered clustered dot in a brick pattern (cells 8 x 4 at fine, 8 x 2 at
standard, so the dots sit on a ~45 degree lattice of about 36 lines per inch with 33 and
17 grey levels). G4 codes a run boundary that sits under one in the previous row in one
to three bits, and short, wide dots keep most boundaries like that, so a screened photo
costs a fraction of Floyd-Steinberg's bytes (whose boundaries are random) and less than
Ghostscript's round dots.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from fax.pages import Resolution

Grey = NDArray[np.uint8]
Bits = NDArray[np.bool_]

THRESHOLD = 128  # below: black, else white: light grey backgrounds become white
BLOCK = 16  # classification block, page pixels
EVIDENCE_RANGE = (16, 200)  # mid-tone grey values that may belong to a photo
EVIDENCE_GRADIENT = 12  # steepest neighbour difference of a smooth (photo-like) pixel
EVIDENCE_SHARE = 0.35  # share of evidence pixels that makes a block a tone block
MIN_REGION_BLOCKS = 4  # smaller groups of tone blocks stay thresholded


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
    """The threshold plane of a whole page (cached: pages share a size)."""
    cell = _cell(8, 4) if ydpi >= 150 else _cell(8, 2)
    reps = (-(-height // cell.shape[0]), -(-width // cell.shape[1]))
    plane = np.tile(cell, reps)[:height, :width]
    plane.setflags(write=False)
    return plane


def _maybe_tone(grey: Grey) -> bool:
    """A cheap look at every 4th row and column: are there enough smooth mid-tones for a
    tone region at all? (Text pages stop here.)"""
    lo, hi = EVIDENCE_RANGE
    sample = grey[:-1:4, :-1:4]
    rows, cols = sample.shape
    right = grey[::4, 1::4][:rows, :cols]
    below = grey[1::4, ::4][:rows, :cols]
    mid = (sample >= lo) & (sample <= hi)
    wide = sample.astype(np.int16)
    # Stricter than the blocks' test: a text edge is steep in one direction at least,
    # and rarely flat within 6 levels both ways.
    flat = EVIDENCE_GRADIENT // 2
    smooth = (np.abs(wide - right) <= flat) & (np.abs(wide - below) <= flat)
    # The smallest tone region (MIN_REGION_BLOCKS blocks, EVIDENCE_SHARE of them
    # evidence) shows ~22 samples; ask for half of that.
    need = BLOCK * BLOCK * MIN_REGION_BLOCKS * EVIDENCE_SHARE / 16 / 2
    return int(np.count_nonzero(mid & smooth)) >= need


def _tone_blocks(grey: Grey) -> NDArray[np.bool_]:
    """Blocks (BLOCK x BLOCK page pixels) rich in smooth mid-tones."""
    if not _maybe_tone(grey):
        return np.zeros((0, 0), np.bool_)
    h, w = grey.shape
    half = grey[: h - h % 2 : 2, : w - w % 2 : 2].astype(np.int16)
    lo, hi = EVIDENCE_RANGE
    mid = (half >= lo) & (half <= hi)
    steep = np.zeros(half.shape, np.bool_)
    steep[:, 1:] |= np.abs(half[:, 1:] - half[:, :-1]) > EVIDENCE_GRADIENT
    steep[:, :-1] |= steep[:, 1:].copy()
    vert = np.abs(half[1:, :] - half[:-1, :]) > EVIDENCE_GRADIENT
    steep[1:, :] |= vert
    steep[:-1, :] |= vert
    evidence = mid & ~steep
    b = BLOCK // 2
    rows, cols = evidence.shape[0] // b, evidence.shape[1] // b
    counts = evidence[: rows * b, : cols * b].reshape(rows, b, cols, b).sum(axis=(1, 3))
    blocks: NDArray[np.bool_] = counts >= EVIDENCE_SHARE * b * b
    return blocks


def _close(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Morphological closing with a 3 x 3 square on the block grid (joins neighbours)."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    wide = grown.copy()
    wide[:, 1:] |= grown[:, :-1]
    wide[:, :-1] |= grown[:, 1:]
    inner = wide.copy()
    inner[1:, :] &= wide[:-1, :]
    inner[:-1, :] &= wide[1:, :]
    out = inner.copy()
    out[:, 1:] &= inner[:, :-1]
    out[:, :-1] &= inner[:, 1:]
    return out | mask


def _components(mask: NDArray[np.bool_]) -> list[tuple[int, int, int, int, int]]:
    """Bounding boxes (top, left, bottom, right, size) of 8-connected groups of blocks."""
    seen = np.zeros(mask.shape, np.bool_)
    rows, cols = mask.shape
    boxes = []
    for r0, c0 in zip(*np.nonzero(mask), strict=True):
        if seen[r0, c0]:
            continue
        stack = [(int(r0), int(c0))]
        seen[r0, c0] = True
        top, left, bottom, right, size = int(r0), int(c0), int(r0), int(c0), 0
        while stack:
            r, c = stack.pop()
            size += 1
            top, bottom, left, right = min(top, r), max(bottom, r), min(left, c), max(right, c)
            for rr in (r - 1, r, r + 1):
                for cc in (c - 1, c, c + 1):
                    if 0 <= rr < rows and 0 <= cc < cols and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        boxes.append((top, left, bottom, right, size))
    return boxes


def tone_regions(grey: Grey) -> list[tuple[slice, slice]]:
    """The page areas (row slice, column slice) to screen rather than threshold."""
    blocks = _tone_blocks(grey)
    if not blocks.any():
        return []
    h, w = grey.shape
    regions = []
    for top, left, bottom, right, size in _components(_close(blocks)):
        if size < MIN_REGION_BLOCKS:
            continue
        # One block more on every side: the blocks a photo's edge cuts through hold too
        # little of it to count, and screening the white around it changes nothing.
        regions.append((slice(max(0, top - 1) * BLOCK, min(h, (bottom + 2) * BLOCK)),
                        slice(max(0, left - 1) * BLOCK, min(w, (right + 2) * BLOCK))))  # fmt: skip
    return regions


def binarize(grey: Grey, res: Resolution) -> Bits:
    """The fax page of a grey page: True where the page is white."""
    white: Bits = grey >= THRESHOLD
    regions = tone_regions(grey)
    if regions:
        plane = screen(grey.shape[0], grey.shape[1], res.ydpi)
        for rows, cols in regions:
            white[rows, cols] = grey[rows, cols] >= plane[rows, cols]
    return white
