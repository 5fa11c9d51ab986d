"""Grey page -> 1-bit fax page: text and line art thresholded, tones screened, paper white.

Every pixel darker than ``THRESHOLD`` is ink, every lighter one white, unless it belongs to
one of two kinds of tone that a fax should carry:

* **Photos**: areas rich in smooth mid-tones (16-200) whose pixels vary (classified in
  16 x 16 blocks on a half-size copy, joined by a closing, each group's bounding box a
  region). They get the clustered-dot screen (``fax.screens.screen``).
* **Fills**: flat grey areas (form fields, table header rows, shaded boxes, bars of a
  chart) between ``TINT_MIN`` and the paper. They get a tint (``fax.screens.tint``): a
  line screen where one holds the tone (cheapest in G4), else the clustered dot. Text on a
  fill stays thresholded, and the tint keeps a white halo (``halo_width``: 2 px at fine)
  around every stroke, so small text on grey stays crisp and legible.

What is not a fill is whitened: the paper itself, whatever its tint (the page's most
common grey, e.g. a scanned sheet or a coloured background), anything within
``PAPER_MARGIN`` of it, anything lighter than ``TINT_CUT`` (under 4 % ink: paper tint that
would cost airtime and show nothing), and grey that is not flat (scanner noise, the
anti-aliased edges of text), which thresholding treats as the paper or the ink it sits on.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fax.pages import Resolution
from fax.screens import FINE_MIN_YDPI, lines_for, screen, tint

__all__ = ["THRESHOLD", "binarize", "black_bits", "is_photo", "paper_level", "screen",
           "tint_cut", "tone_regions"]

Grey = NDArray[np.uint8]
Bits = NDArray[np.bool_]

THRESHOLD = 128  # below: ink, else white
BLOCK = 16  # classification block, page pixels
EVIDENCE_RANGE = (16, 200)  # mid-tone grey values that may belong to a photo
EVIDENCE_GRADIENT = 12  # steepest neighbour difference of a smooth (photo-like) pixel
EVIDENCE_SHARE = 0.35  # share of evidence pixels that makes a block a tone block
MIN_REGION_BLOCKS = 4  # smaller groups of tone blocks stay thresholded
TINT_MIN = 32  # darker flat areas are ink
TINT_CUT = 245  # lighter grey is paper tint: white
PAPER_MARGIN = 2  # grey this close to the paper's is paper too
FLAT = 2  # neighbour difference (grey levels) of a pixel inside a fill
FILL_SHARE = 0.5  # share of flat pixels that makes a block (8 x 8 half-size pixels) a fill
MIN_TONE_SAMPLES = 16  # a fill tone shows in this many samples (4 x 4 page pixels each)
PHOTO_FLAT_SHARE = 0.5  # a tone region with fewer exactly flat pixels than this is a photo


def _smooth(grey: NDArray[np.int16], step: int) -> NDArray[np.bool_]:
    """Pixels whose right and lower neighbours differ from them by at most ``step``."""
    right = np.abs(grey[:, 1:] - grey[:, :-1]) <= step
    below = np.abs(grey[1:, :] - grey[:-1, :]) <= step
    out = np.zeros(grey.shape, np.bool_)
    out[:-1, :-1] = right[:-1, :] & below[:, :-1]
    return out


def _flat(grey: Grey) -> NDArray[np.bool_]:
    """Pixels within FLAT grey levels of all four neighbours (the border: not flat)."""
    wide = grey.astype(np.int16)
    across = np.abs(wide[:, 1:] - wide[:, :-1]) <= FLAT
    down = np.abs(wide[1:, :] - wide[:-1, :]) <= FLAT
    out = np.zeros(grey.shape, np.bool_)
    out[1:-1, 1:-1] = across[1:-1, 1:] & across[1:-1, :-1] & down[1:, 1:-1] & down[:-1, 1:-1]
    return out


def _maybe_tone(grey: Grey) -> bool:
    """A cheap look at every 4th row and column: are there enough smooth greys for a photo
    or a fill at all? (Text pages stop here.)"""
    sample = grey[:-1:4, :-1:4]
    # The smallest tone region (MIN_REGION_BLOCKS blocks, EVIDENCE_SHARE of them
    # evidence) shows ~22 samples; ask for half of that.
    need = BLOCK * BLOCK * MIN_REGION_BLOCKS * EVIDENCE_SHARE / 16 / 2
    lo, hi = EVIDENCE_RANGE[0], TINT_CUT
    # lo <= g < hi in one unsigned comparison (greys below lo wrap round to large values).
    found = np.flatnonzero(sample - np.uint8(lo) < np.uint8(hi - lo))
    if found.size < need:
        return False
    flat_grey = np.ascontiguousarray(grey).ravel()
    at = found // sample.shape[1] * 4 * grey.shape[1] + found % sample.shape[1] * 4
    here = flat_grey[at].astype(np.int16)
    # Stricter than the blocks' test: a text edge is steep in one direction at least,
    # and rarely flat within 6 levels both ways.
    flat = EVIDENCE_GRADIENT // 2
    smooth = ((np.abs(here - flat_grey[at + 1]) <= flat)
              & (np.abs(here - flat_grey[at + grey.shape[1]]) <= flat))  # fmt: skip
    return int(np.count_nonzero(smooth)) >= need


def _half(grey: Grey) -> NDArray[np.int16]:
    h, w = grey.shape
    return grey[: h - h % 2 : 2, : w - w % 2 : 2].astype(np.int16)


def _block_counts(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """How many of each (BLOCK/2)^2 half-size block's pixels are set."""
    b = BLOCK // 2
    rows, cols = mask.shape[0] // b, mask.shape[1] // b
    counts: NDArray[np.int64] = mask[: rows * b, : cols * b].reshape(rows, b, cols, b).sum(
        axis=(1, 3))  # fmt: skip
    return counts


def _tone_blocks(half: NDArray[np.int16]) -> NDArray[np.bool_]:
    """Blocks (BLOCK x BLOCK page pixels) rich in smooth mid-tones."""
    lo, hi = EVIDENCE_RANGE
    mid = (half >= lo) & (half <= hi)
    steep = np.zeros(half.shape, np.bool_)
    steep[:, 1:] |= np.abs(half[:, 1:] - half[:, :-1]) > EVIDENCE_GRADIENT
    steep[:, :-1] |= steep[:, 1:].copy()
    vert = np.abs(half[1:, :] - half[:-1, :]) > EVIDENCE_GRADIENT
    steep[1:, :] |= vert
    steep[:-1, :] |= vert
    blocks: NDArray[np.bool_] = _block_counts(mid & ~steep) >= EVIDENCE_SHARE * (BLOCK // 2) ** 2
    return blocks


def _fill_blocks(half: NDArray[np.int16],
                 cut: int) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:  # fmt: skip
    """Blocks mostly flat grey between TINT_MIN and ``cut``, grown by one block so that
    a fill's edges (in blocks shared with the paper) are covered too; and a histogram of
    the flat greys (every other half-size pixel): the tones the fills have."""
    flat = (half >= TINT_MIN) & (half < cut) & _smooth(half, FLAT)
    core = _block_counts(flat) >= FILL_SHARE * (BLOCK // 2) ** 2
    counts = np.bincount(half[::2, ::2][flat[::2, ::2]], minlength=256)
    return _grow(core), counts


def _grow(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Dilation with a 3 x 3 square on the block grid."""
    tall = mask.copy()
    tall[1:, :] |= mask[:-1, :]
    tall[:-1, :] |= mask[1:, :]
    out = tall.copy()
    out[:, 1:] |= tall[:, :-1]
    out[:, :-1] |= tall[:, 1:]
    return out


def _close(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Morphological closing with a 3 x 3 square on the block grid (joins neighbours)."""
    wide = _grow(mask)
    inner = wide.copy()
    inner[1:, :] &= wide[:-1, :]
    inner[:-1, :] &= wide[1:, :]
    out = inner.copy()
    out[:, 1:] &= inner[:, :-1]
    out[:, :-1] &= inner[:, 1:]
    return out | mask


def _regions(grey: Grey, blocks: NDArray[np.bool_]) -> list[tuple[slice, slice]]:
    h, w = grey.shape
    regions = []
    for brows, bcols in _boxes(_close(blocks)):
        if np.count_nonzero(blocks[brows, bcols]) < MIN_REGION_BLOCKS:
            continue
        # One block more on every side: the blocks a photo's edge cuts through hold too
        # little of it to count, and screening the white around it changes nothing.
        top, left = max(0, brows.start - 1) * BLOCK, max(0, bcols.start - 1) * BLOCK
        bottom, right = min(h, (brows.stop + 1) * BLOCK), min(w, (bcols.stop + 1) * BLOCK)
        regions.append((slice(top, bottom), slice(left, right)))
    return regions


def tone_regions(grey: Grey) -> list[tuple[slice, slice]]:
    """The page areas (row slice, column slice) rich in smooth mid-tones: photos, and
    mid-grey fills large enough to count."""
    if not _maybe_tone(grey):
        return []
    return _regions(grey, _tone_blocks(_half(grey)))


def is_photo(area: Grey) -> bool:
    """Whether a tone region is a photo (its greys vary) rather than flat fills."""
    inner = area[1:-1, 1:-1]
    flat = ((inner == area[:-2, 1:-1]) & (inner == area[2:, 1:-1])
            & (inner == area[1:-1, :-2]) & (inner == area[1:-1, 2:]))  # fmt: skip
    toned = inner < TINT_CUT
    return int(np.count_nonzero(flat & toned)) < PHOTO_FLAT_SHARE * int(np.count_nonzero(toned))


def paper_level(grey: Grey) -> int:
    """The paper's grey: the page's most common level (every 4th row and column)."""
    return int(np.argmax(np.bincount(grey[::4, ::4].ravel(), minlength=256)))


def tint_cut(grey: Grey) -> int:
    """Grey at or above this level is paper (whitened), below it a fill may be tinted."""
    paper = paper_level(grey)
    return min(TINT_CUT, paper - PAPER_MARGIN) if paper >= THRESHOLD else TINT_CUT


def halo_width(res: Resolution) -> int:
    """White pixels kept between a text stroke and a tint (about 0.25 mm)."""
    return 2 if res.ydpi >= FINE_MIN_YDPI else 1


def _dilate(mask: NDArray[np.bool_], radius: int) -> NDArray[np.bool_]:
    """``mask`` grown by ``radius`` pixels (4-neighbour steps: a diamond)."""
    out = mask
    for _ in range(radius):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _runs(flags: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The ``(start, stop)`` of each run of True in a 1-d array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flags, [False])).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _boxes(mask: NDArray[np.bool_]) -> list[tuple[slice, slice]]:
    """Boxes around the groups of set blocks, found by cutting the grid along empty rows
    and columns (twice each way: enough to part the fills of a page)."""
    boxes = [(slice(0, mask.shape[0]), slice(0, mask.shape[1]))]
    for axis in (1, 0, 1, 0):
        parts = []
        for rows, cols in boxes:
            sub: NDArray[np.bool_] = mask[rows, cols]
            flags: NDArray[np.bool_] = np.asarray(sub.any(axis=axis))
            for a, b in _runs(flags):
                if axis == 1:
                    parts.append((slice(rows.start + a, rows.start + b), cols))
                else:
                    parts.append((rows, slice(cols.start + a, cols.start + b)))
        boxes = parts
    return boxes


def binarize(grey: Grey, res: Resolution) -> Bits:
    """The fax page of a grey page: True where the page is white."""
    white: Bits = grey >= THRESHOLD
    if _maybe_tone(grey):
        _screen_tones(grey, res, white)
    return white


def black_bits(grey: Grey, res: Resolution) -> NDArray[np.uint8]:
    """The fax page packed for G4, eight pixels a byte, 1 bits black (min-is-white)."""
    if not _maybe_tone(grey):
        black: Bits = grey < THRESHOLD
        return np.packbits(black, axis=1)
    white: Bits = grey >= THRESHOLD
    _screen_tones(grey, res, white)
    return np.packbits(~white, axis=1)


def _screen_tones(grey: Grey, res: Resolution, white: Bits) -> None:
    """Draw the page's photos and fills into ``white`` (the thresholded page)."""
    half = _half(grey)
    photos = [r for r in _regions(grey, _tone_blocks(half)) if is_photo(grey[r])]
    cut = tint_cut(grey)
    fills, counts = _fill_blocks(half, cut)
    # Tones met in fewer than a few samples are edges, not fills: no line screen for them.
    lines = lines_for(np.where(counts >= MIN_TONE_SAMPLES, counts, 0), res.ydpi)
    for brows, bcols in _boxes(fills):
        rows = slice(brows.start * BLOCK, min(grey.shape[0], brows.stop * BLOCK))
        cols = slice(bcols.start * BLOCK, min(grey.shape[1], bcols.stop * BLOCK))
        area = np.repeat(np.repeat(fills[brows, bcols], BLOCK, axis=0), BLOCK, axis=1)
        box = grey[rows, cols]
        toned = (box >= TINT_MIN) & (box < cut) & area[: box.shape[0], : box.shape[1]]
        # Darker than the threshold, only a flat pixel is a fill's: the edges of strokes
        # stay ink (with no dark fills on the page, all of them do).
        dark = box < THRESHOLD
        if counts[TINT_MIN:THRESHOLD].max() >= MIN_TONE_SAMPLES:
            dark &= ~_flat(box)
        toned &= ~dark
        for prow, pcol in photos:  # photos get their own screen below
            toned[_within(prow, rows), _within(pcol, cols)] = False
        ink = ~white[rows, cols] & ~toned
        # Text and lines on a fill stay as thresholded, with a white halo around them.
        toned &= ~_dilate(ink, halo_width(res))
        np.copyto(white[rows, cols], tint(grey, rows, cols, res.ydpi, lines), where=toned)
    if photos:
        plane = screen(grey.shape[0], grey.shape[1], res.ydpi)
        for prow, pcol in photos:
            white[prow, pcol] = grey[prow, pcol] >= plane[prow, pcol]


def _within(part: slice, whole: slice) -> slice:
    """``part`` (page coordinates) relative to ``whole``, clipped to it."""
    start = max(part.start, whole.start) - whole.start
    stop = min(part.stop, whole.stop) - whole.start
    return slice(start, max(start, stop))
