"""Text is thresholded, photos and grey fills are screened, light grey goes white."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fax import halftone, screens, tiff
from fax.pages import FINE, STANDARD


def page(h: int = 2292) -> np.ndarray:
    return np.full((h, 1728), 255, np.uint8)


def photo(h: int, w: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 60 + 120 * (xx / w) + 40 * np.sin(yy / 37.0)
    return np.clip(base + rng.normal(0, 3, (h, w)), 0, 255).astype(np.uint8)


def text_like(h: int, w: int, seed: int = 2) -> np.ndarray:
    """Black strokes with anti-aliased edges on white (what rendered text looks like)."""
    rng = np.random.default_rng(seed)
    out = np.full((h, w), 255, np.uint8)
    for _ in range(h * w // 400):
        y, x = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 4))
        out[y : y + 18, x : x + 2] = 0
        out[y : y + 18, x + 2] = 140
        out[y : y + 18, max(0, x - 1)] = 180
    return out


def test_photo_region_is_found_and_text_is_not() -> None:
    grey = page()
    grey[300:900, 200:1400] = photo(600, 1200)
    grey[1200:1800, 100:1600] = text_like(600, 1500)
    regions = halftone.tone_regions(grey)
    assert len(regions) == 1
    rows, cols = regions[0]
    assert 250 < rows.start <= 300 and 900 <= rows.stop < 950
    assert 150 < cols.start <= 200 and 1400 <= cols.stop < 1450
    white = halftone.binarize(grey, FINE)
    # Text: exactly the threshold. Photo: a screen with the photo's mean tone.
    assert np.array_equal(white[1200:1800], grey[1200:1800] >= halftone.THRESHOLD)
    area = white[320:880, 220:1380]
    assert abs((1 - area.mean()) - (1 - grey[320:880, 220:1380].mean() / 255)) < 0.03


def test_light_grey_background_is_whitened_and_text_on_it_kept() -> None:
    """The page's own ground (a tinted sheet, a coloured background) is paper: white."""
    grey = np.full((2292, 1728), 225, np.uint8)
    grey[400:600, 300:1300] = text_like(200, 1000)
    grey[400:600, 300:1300][grey[400:600, 300:1300] == 255] = 225
    white = halftone.binarize(grey, FINE)
    assert white[200:400].all()
    assert np.array_equal(white[400:600, 300:1300], grey[400:600, 300:1300] >= 128)


def test_scanner_noise_on_near_white_paper_is_whitened() -> None:
    rng = np.random.default_rng(5)
    grey = np.clip(rng.normal(236, 4, (2292, 1728)), 0, 255).astype(np.uint8)
    grey[400:600, 300:1300] = np.minimum(grey[400:600, 300:1300], text_like(200, 1000))
    white = halftone.binarize(grey, FINE)
    assert np.array_equal(white, grey >= 128)


def test_paper_tint_is_whitened_and_darker_fills_on_it_keep_their_tone() -> None:
    grey = np.full((2292, 1728), 246, np.uint8)  # lighter than TINT_CUT: paper tint
    grey[300:800, 200:1500] = 241  # within the paper's margin? no: a fill, 2 levels off
    grey[1000:1500, 200:1500] = 150
    white = halftone.binarize(grey, FINE)
    assert white[:300].all() and white[1600:].all()
    assert abs((1 - white[1100:1400, 300:1400].mean()) - (1 - 150 / 255)) < 0.03
    assert abs((1 - white[400:700, 300:1400].mean()) - (1 - 241 / 255)) < 0.03


@pytest.mark.parametrize("level", [224, 230, 237, 204, 140])
def test_a_grey_fill_keeps_its_tone(level: int) -> None:
    grey = page()
    grey[300:1300, 100:1600] = level
    ink = 1 - halftone.binarize(grey, FINE)[340:1260, 140:1560].mean()
    assert abs(ink - (1 - level / 255)) < 0.02


def test_seven_point_text_on_a_grey_field_stays_black_with_a_white_halo() -> None:
    """7 pt Helvetica on an 88 % grey field, through PDFium: every stroke pixel is ink,
    no tint dot comes within two pixels of a stroke, and the field keeps its tone."""
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    from fax import documents

    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, invariant=True)
    c.setFillGray(0.88)
    c.rect(40, 500, 400, 200, stroke=0, fill=1)
    c.setFillGray(0)
    c.setFont("Helvetica", 7)
    for i in range(12):
        c.drawString(46, 680 - 14 * i, f"Label {i}: invoice number, date and amount due")
    c.showPage()
    c.save()
    _, (grey,) = documents.pdf_grey_pages(buf.getvalue(), documents.Options(FINE))
    white = halftone.binarize(grey, FINE)
    strokes = grey < halftone.THRESHOLD
    assert strokes.sum() > 5000  # the text is there
    assert not white[strokes].any()  # every stroke pixel is black
    dots = ~white & ~strokes
    near = strokes.copy()
    for _ in range(2):  # two pixels around every stroke (a diamond)
        grown = near.copy()
        grown[1:] |= near[:-1]
        grown[:-1] |= near[1:]
        grown[:, 1:] |= near[:, :-1]
        grown[:, :-1] |= near[:, 1:]
        near = grown
    assert dots.sum() > 10000  # the field is tinted
    assert not (dots & near).any()
    # the field's tone, measured between the lines of text
    rows = np.flatnonzero(~strokes[:, 140:1200].any(axis=1))
    rows = rows[(rows > 380) & (rows < 900)]
    field = ~white[rows, 140:1200]
    assert abs(field.mean() - 0.12) < 0.03


def test_a_tone_a_line_screen_holds_gets_horizontal_lines() -> None:
    """80 % grey (a table header row): one black line in five rows, cheaper in G4 than
    the dot screen, especially in a narrow stripe (a landscape page's turned header)."""
    grey = page()
    grey[100:2100, 300:352] = 204
    white = halftone.binarize(grey, FINE)
    stripe = white[120:2080, 310:342]
    rows_black = ~stripe.any(axis=1)
    assert (rows_black == (np.arange(120, 2080) % 5 == 0)).all()
    assert stripe[~rows_black].all()
    dots = grey >= screens.screen(2292, 1728, 196)
    assert len(tiff.encode([white], FINE)) < 0.4 * len(tiff.encode([dots], FINE))


@settings(max_examples=40, deadline=None)
@given(level=st.integers(halftone.TINT_MIN, halftone.TINT_CUT - 1), fine=st.booleans())
def test_tint_keeps_the_tone(level: int, fine: bool) -> None:
    """A flat grey tinted over whole tiles comes out within one dot-screen level, or the
    line screen's tolerance, of it."""
    res = FINE if fine else STANDARD
    grey = np.full((120, 64), level, np.uint8)
    lines = screens.lines_for(np.bincount(grey.ravel(), minlength=256), res.ydpi)
    white = screens.tint(grey, slice(0, 120), slice(0, 64), res.ydpi, lines)
    levels = 32 if fine else 16
    slack = max(1 / levels, screens.LINE_TOLERANCE / 255)
    assert abs(white.mean() - level / 255) <= slack + 1e-9


def test_screened_photo_costs_less_than_error_diffusion() -> None:
    """The clustered screen keeps G4 small: well under Floyd-Steinberg's bytes."""
    from PIL import Image

    grey = page()
    grey[200:2000, 100:1600] = photo(1800, 1500)
    screened = len(tiff.encode([halftone.binarize(grey, FINE)], FINE))
    fs = np.asarray(Image.fromarray(grey).convert("1")) > 0
    diffused = len(tiff.encode([fs], FINE))
    assert screened < 0.5 * diffused


@settings(max_examples=25, deadline=None)
@given(level=st.integers(0, 255), fine=st.booleans())
def test_screen_keeps_the_tone(level: int, fine: bool) -> None:
    """A flat grey screened over whole tiles comes out within one screen level of it."""
    res = FINE if fine else STANDARD
    plane = halftone.screen(64, 64, res.ydpi)
    white = np.full((64, 64), level, np.uint8) >= plane
    levels = 32 if fine else 16
    assert abs(white.mean() - level / 255) <= 1 / levels + 1e-9


@pytest.mark.parametrize("res", [FINE, STANDARD])
def test_black_and_white_pass_through_the_screen(res: object) -> None:
    plane = halftone.screen(100, 1728, res.ydpi)  # type: ignore[attr-defined]
    assert (np.zeros((100, 1728), np.uint8) >= plane).sum() == 0
    assert (np.full((100, 1728), 255, np.uint8) >= plane).all()
