"""The compiled G4 coder writes byte for byte what libtiff's writes, and Pillow's libtiff
decodes it to the same pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fax import halftone, t6, tiff
from fax.pages import FINE
from tests.fax.test_halftone import photo, text_like


def black_runs(rng: np.random.Generator, h: int, w: int, density: float) -> np.ndarray:
    """Rows of random runs, each row often close to the one above (as on real pages)."""
    out = np.zeros((h, w), np.bool_)
    for r in range(h):
        if r and rng.random() < 0.5:
            out[r] = np.roll(out[r - 1], int(rng.integers(-4, 5)))
            continue
        for _ in range(int(rng.integers(0, 1 + density * w / 8))):
            a = int(rng.integers(0, w))
            out[r, a : a + int(rng.integers(1, max(2, int(density * 200))))] = True
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 24),
       w=st.sampled_from([1728, 2048, 2432, 1, 7, 9, 64, 1000]),
       density=st.floats(0, 1), noise=st.booleans())  # fmt: skip
def test_same_code_as_libtiff(seed: int, h: int, w: int, density: float, noise: bool) -> None:
    rng = np.random.default_rng(seed)
    black = rng.random((h, w)) < density if noise else black_runs(rng, h, w, density)
    packed = np.packbits(black, axis=1)
    code = t6.code(packed, w)
    assert code == tiff.libtiff_g4_code(packed, w)


@pytest.mark.parametrize("make", ["text", "photo", "white", "black", "stripes"])
def test_whole_pages_decode_to_the_same_pixels(make: str) -> None:
    grey = np.full((2292, 1728), 255, np.uint8)
    if make == "text":
        grey[100:2100, 50:1650] = text_like(2000, 1600)
    elif make == "photo":
        grey[100:2100, 50:1650] = photo(2000, 1600)
    elif make == "black":
        grey[:] = 0
    elif make == "stripes":
        grey[:, ::2] = 0
    packed = halftone.black_bits(grey, FINE)
    code = t6.code(packed, 1728)
    assert code == tiff.libtiff_g4_code(packed, 1728)
    data = tiff.assemble([(1728, 2292, code)], FINE)
    with Image.open(io.BytesIO(data)) as tif:
        assert np.array_equal(np.asarray(tif.convert("L")) < 128,
                              np.unpackbits(packed, axis=1).astype(np.bool_))  # fmt: skip


def test_rows_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(ValueError, match="packed rows"):
        t6.code(np.zeros((3, 10), np.uint8), 1728)
