"""TIFF-F writing is lossless; pages go into a PDF with the same CCITT bits at true size."""

from __future__ import annotations

import io

import numpy as np
import pikepdf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from fax import render, tiff
from fax.pages import FINE, STANDARD


def strips(data: bytes) -> list[bytes]:
    """The G4 data of each page, read through Pillow's TIFF parser."""
    out = []
    with Image.open(io.BytesIO(data)) as tif:
        for n in range(tif.n_frames):
            tif.seek(n)
            (offset,), (count,) = tif.tag_v2[273], tif.tag_v2[279]
            out.append(data[offset : offset + count])
    return out


@settings(max_examples=30, deadline=None)
@given(
    pages=st.lists(arrays(np.bool_, st.tuples(st.integers(1, 40), st.just(1728))),
                   min_size=1, max_size=3),
    fine=st.booleans(),
)
def test_g4_pages_decode_to_the_same_pixels(pages: list[np.ndarray], fine: bool) -> None:
    data = tiff.encode(pages, FINE if fine else STANDARD)
    with Image.open(io.BytesIO(data)) as tif:
        assert tif.n_frames == len(pages)
        for n, page in enumerate(pages):
            tif.seek(n)
            assert np.array_equal(np.asarray(tif.convert("L")) >= 128, page)


@pytest.mark.parametrize("res", [FINE, STANDARD])
def test_pdf_holds_the_same_ccitt_bits_at_true_size(res: object) -> None:
    rng = np.random.default_rng(5)
    pages = []
    for height in (2292, 1146) if res is FINE else (1146, 1078):
        page = np.ones((height, 1728), np.bool_)
        page[100:400, 200:900] = rng.random((300, 700)) > 0.3
        pages.append(page)
    data = tiff.encode(pages, res)  # type: ignore[arg-type]
    pdf = render.pages_to_pdf(data)
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert len(doc.pages) == len(pages)
        for page, code, want in zip(doc.pages, strips(data), pages, strict=True):
            (image,) = page.Resources.XObject.values()
            assert [str(f) for f in image.Filter] == ["/CCITTFaxDecode"]
            (parms,) = image.DecodeParms
            assert int(parms.K) == -1  # G4
            assert image.read_raw_bytes() == code  # the very same bits, not re-encoded
            assert (int(image.Width), int(image.Height)) == (1728, want.shape[0])
            box = [float(v) for v in page.MediaBox]
            ydpi = res.ydpi  # type: ignore[attr-defined]
            assert box[2] - box[0] == pytest.approx(1728 / 204 * 72, abs=0.01)
            assert box[3] - box[1] == pytest.approx(want.shape[0] / ydpi * 72, abs=0.01)


def test_assemble_refuses_wrong_widths() -> None:
    with pytest.raises(ValueError, match="1728"):
        tiff.encode([np.ones((10, 1700), np.bool_)], FINE)
    with pytest.raises(ValueError):
        tiff.assemble([], FINE)


@pytest.mark.parametrize("res", [FINE, STANDARD])
def test_pages_read_from_the_ifds_as_pillow_reads_them(res: object) -> None:
    data = tiff.encode([np.ones((40, 1728), np.bool_), np.zeros((7, 1728), np.bool_)],
                       res)  # type: ignore[arg-type]  # fmt: skip
    fast = tiff.pages(data)
    with Image.open(io.BytesIO(data)) as tif:
        slow = []
        for n in range(tif.n_frames):
            tif.seek(n)
            xdpi, ydpi = tif.info["dpi"]
            slow.append(tiff.PageInfo(tif.width, tif.height, float(xdpi), float(ydpi)))
    assert fast == slow and [p.height for p in fast] == [40, 7]
    # A TIFF that is not ours (big-endian, written by Pillow) is read too.
    buf = io.BytesIO()
    Image.new("1", (1728, 5), 1).save(buf, "TIFF", compression="group4", dpi=(204, 196))
    assert tiff.pages(buf.getvalue()) == [tiff.PageInfo(1728, 5, 204.0, 196.0)]
    with pytest.raises(OSError):
        tiff.pages(b"II*\0" + b"\0" * 4)  # no page
