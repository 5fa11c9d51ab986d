"""Page geometry: standard paper fills the line at its true length, other sizes fit A4."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fax.pages import FAX_WIDTH, FINE, STANDARD, place, resolution


@pytest.mark.parametrize(
    ("size_in", "res", "want"),
    [
        ((210 / 25.4, 297 / 25.4), FINE, (1728, 2292)),
        ((210 / 25.4, 297 / 25.4), STANDARD, (1728, 1146)),
        ((8.5, 11), FINE, (1728, 2156)),
        ((8.5, 11), STANDARD, (1728, 1078)),
        ((297 / 25.4, 210 / 25.4), FINE, (1728, 2292)),  # A4 landscape, turned
        ((11, 8.5), FINE, (1728, 2156)),  # Letter landscape, turned
        ((148 / 25.4, 210 / 25.4), FINE, (1728, 2292)),  # A5: fitted into A4
    ],
)
def test_page_sizes(size_in: tuple[float, float], res: object, want: tuple[int, int]) -> None:
    spot = place(*size_in, resolution(res))  # type: ignore[arg-type]
    assert (spot.width, spot.height) == want
    assert spot.rotate == (size_in[0] > size_in[1])


def test_standard_paper_fills_the_line() -> None:
    spot = place(210 / 25.4, 297 / 25.4, FINE)
    assert (spot.x, spot.y, spot.w, spot.h) == (0, 0, 1728, 2292)


def test_unknown_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="superfine"):
        resolution("superfine")


@given(w=st.floats(0.5, 60), h=st.floats(0.5, 60), fine=st.booleans(), paper=st.booleans())
def test_every_page_fits_the_line(w: float, h: float, fine: bool, paper: bool) -> None:
    """Any page size gives a 1728-wide page holding the whole (turned) source, aspect kept
    within a pixel unless it is standard paper (stretched to the line on purpose)."""
    res = FINE if fine else STANDARD
    spot = place(w, h, res, paper=paper)
    assert spot.width == FAX_WIDTH
    assert spot.x >= 0 and spot.x + spot.w <= spot.width
    assert spot.y >= 0 and spot.y + spot.h <= spot.height
    src_w, src_h = (h, w) if w > h else (w, h)
    stretched = spot.w == FAX_WIDTH and spot.h == spot.height and paper
    if not stretched and min(spot.w, spot.h) > 20:
        got = (spot.w / (FAX_WIDTH / (210 / 25.4))) / (spot.h / res.ydpi)
        assert got == pytest.approx(src_w / src_h, rel=0.05)
