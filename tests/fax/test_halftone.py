"""Text is thresholded, photos and grey fills are screened, light grey goes white."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fax import halftone, tiff
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
    grey = page()
    grey[200:1000, 100:1600] = 225
    grey[400:600, 300:1300] = text_like(200, 1000)
    grey[400:600, 300:1300][grey[400:600, 300:1300] == 255] = 225
    white = halftone.binarize(grey, FINE)
    assert white[200:400].all()
    assert np.array_equal(white[400:600, 300:1300], grey[400:600, 300:1300] >= 128)


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
