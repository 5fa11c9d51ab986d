"""Documents of every type become TIFF-F pages of the right size with the fax tags."""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image

from fax import render
from fax.sandbox import Sandbox
from tests.fax import samples

A4_FINE, A4_STD, LETTER_FINE = (1728, 2292), (1728, 1146), (1728, 2156)


def frames(tiff: bytes) -> list[Image.Image]:
    out = []
    with Image.open(io.BytesIO(tiff)) as tif:
        for n in range(tif.n_frames):
            tif.seek(n)
            out.append(tif.copy())
    return out


def check_tags(tiff: bytes, ydpi: int) -> None:
    with Image.open(io.BytesIO(tiff)) as tif:
        for n in range(tif.n_frames):
            tif.seek(n)
            tags = tif.tag_v2
            assert tif.mode == "1"
            assert tags[256] == 1728
            assert tags[258] in (1, (1,))  # BitsPerSample
            assert tags[259] == 4  # G4
            assert tags[262] == 0  # min-is-white
            assert tags[296] == 2  # ResolutionUnit inch
            assert (float(tags[282]), float(tags[283])) == (204.0, ydpi)
            assert tuple(tags[297]) == (n, tif.n_frames)  # PageNumber
            assert tags[254] == 2  # a page of a multi-page document


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make", "ctype", "res", "sizes"),
    [
        (lambda: samples.pdf(2), "application/pdf", "fine", [A4_FINE] * 2),
        (lambda: samples.pdf(2), "application/pdf", "standard", [A4_STD] * 2),
        (samples.letter_pdf, "application/pdf", "fine", [LETTER_FINE]),
        (samples.a4_landscape, "application/pdf", "fine", [A4_FINE]),
        (lambda: samples.image("PNG"), "image/png", "fine", [A4_FINE]),
        (lambda: samples.image("JPEG"), "image/jpeg", "standard", [A4_STD]),
        (lambda: samples.image("TIFF", frames=3), "image/tiff", "fine", [A4_FINE] * 3),
        (lambda: samples.image("PNG", (1700, 2200), dpi=(200, 200)), "image/png", "fine",
         [LETTER_FINE]),
        (lambda: samples.image("PNG", mode="RGBA"), "image/png", "fine", [A4_FINE]),
        (lambda: "Grüße aus Berlin\n\tTabs and € signs".encode(), "text/plain", "fine",
         [A4_FINE]),
    ],
)
def test_every_type_gives_fax_pages(sandbox: Sandbox, make: object, ctype: str, res: str,
                                    sizes: list[tuple[int, int]]) -> None:  # fmt: skip
    data = make()  # type: ignore[operator]
    fax = render.render_document(data, ctype, resolution=res, sandbox=sandbox)
    assert fax.pages == len(sizes)
    assert list(fax.page_sizes) == sizes
    assert fax.resolution == res
    check_tags(fax.tiff, 196 if res == "fine" else 98)
    for page in frames(fax.tiff):
        ink = np.asarray(page.convert("L")) < 128
        assert 0.0002 < ink.mean() < 0.75  # something drawn, not a black page


@pytest.mark.slow
def test_landscape_is_turned_top_to_the_left(sandbox: Sandbox) -> None:
    """The landscape sample's black bar (top left of the page) ends up bottom left."""
    fax = render.render_document(samples.a4_landscape(), "application/pdf", sandbox=sandbox)
    ink = np.asarray(frames(fax.tiff)[0].convert("L")) < 128
    h, w = ink.shape
    assert ink[h // 2 :, : w // 2].sum() > 10 * ink[: h // 2, w // 2 :].sum()


@pytest.mark.slow
def test_tiffinfo_reads_the_fax(sandbox: Sandbox, tmp_path: object) -> None:
    """libtiff's own reader (tiffinfo) agrees on every fax tag, and decodes the data."""
    fax = render.render_document(samples.pdf(2), "application/pdf", sandbox=sandbox)
    path = f"{tmp_path}/fax.tif"
    with open(path, "wb") as f:
        f.write(fax.tiff)
    out = subprocess.run(["tiffinfo", "-D", path], capture_output=True, text=True, check=True,
                         timeout=60)  # fmt: skip
    text = out.stdout
    assert text.count("Compression Scheme: CCITT Group 4") == 2
    assert text.count("Image Width: 1728 Image Length: 2292") == 2
    assert text.count("Resolution: 204, 196 pixels/inch") == 2
    assert text.count("Photometric Interpretation: min-is-white") == 2
    assert "Page Number: 0-2" in text and "Page Number: 1-2" in text
    assert "Bits/Sample: 1" in text
    assert out.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("appearance", [True, False])
def test_filled_form_fields_are_drawn(sandbox: Sandbox, appearance: bool) -> None:
    """The field's value is on the fax page; PDFium without the form environment draws
    nothing there (so this test would catch a renderer that skips init_forms)."""
    data = samples.form_pdf(appearance=appearance)
    fax = render.render_document(data, "application/pdf", sandbox=sandbox)
    ink = np.asarray(frames(fax.tiff)[0].convert("L")) < 128
    # The field box: x 50-550 pt, y 500-620 pt from the bottom of the A4 page.
    box = ink[round((842 - 620) / 72 * 196) : round((842 - 500) / 72 * 196),
              round(50 / 72 * 209): round(550 / 72 * 209)]  # fmt: skip
    assert box.mean() > 0.05
    plain = pdfium.PdfDocument(data)[0].render(scale=1, may_draw_forms=False).to_numpy()
    assert (plain < 128).sum() == 0


@pytest.mark.slow
def test_cover_combine_pdf_and_thumbnail(sandbox: Sandbox) -> None:
    cover = render.render_cover(to="+49 30 1234567", sender="Bench GmbH", subject="Invoice 7",
                                note="Please sign page 2.\n" * 3, pages=3,
                                sandbox=sandbox)  # fmt: skip
    doc = render.render_document(samples.pdf(2), "application/pdf", sandbox=sandbox)
    whole = render.combine([cover, doc])
    assert whole.pages == 3 and whole.page_sizes == (A4_FINE,) * 3
    check_tags(whole.tiff, 196)
    assert np.array_equal(np.asarray(frames(whole.tiff)[1]), np.asarray(frames(doc.tiff)[0]))
    long = render.render_cover(note="word " * 1500, sandbox=sandbox)
    assert long.pages > 1
    with pytest.raises(render.DocumentError) as err:
        render.render_cover(note="word " * 20000, max_pages=5, sandbox=sandbox)
    assert err.value.code == "too_many_pages"
    png = render.thumbnail(whole.tiff, page=1, width=200)
    thumb = Image.open(io.BytesIO(png))
    assert thumb.format == "PNG" and thumb.width == 200
    assert thumb.height == round(200 * 2292 / 1728 * 204 / 196)  # true aspect, not pixels'
    assert np.asarray(thumb.convert("L")).min() < 100  # the cover's heading shows
    with pytest.raises(ValueError):
        render.thumbnail(whole.tiff, page=4)


@pytest.mark.slow
def test_combine_refuses_mixed_resolutions_and_too_many_pages(sandbox: Sandbox) -> None:
    fine = render.render_document(samples.pdf(1), "application/pdf", sandbox=sandbox)
    std = render.render_document(samples.pdf(1), "application/pdf", resolution="standard",
                                 sandbox=sandbox)  # fmt: skip
    with pytest.raises(ValueError, match="fine and standard"):
        render.combine([fine, std])
    with pytest.raises(render.DocumentError) as err:
        render.combine([fine, fine, fine], max_pages=2)
    assert err.value.code == "too_many_pages"


@pytest.mark.slow
@pytest.mark.anyio
async def test_async_wrappers_do_not_block_the_loop(sandbox: Sandbox) -> None:
    """While a conversion runs, the loop keeps ticking."""
    import asyncio

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        fax = await render.render_document_async(samples.pdf(8), "application/pdf",
                                                 sandbox=sandbox)  # fmt: skip
        text = await render.render_text_async("hello", sandbox=sandbox)
        cover = await render.render_cover_async(to="x", sandbox=sandbox)
    finally:
        task.cancel()
    assert (fax.pages, text.pages, cover.pages) == (8, 1, 1)
    assert ticks >= 3


@pytest.mark.slow
def test_a_page_with_a_rotate_entry_is_upright(sandbox: Sandbox) -> None:
    """A portrait page stored with /Rotate 90 shows landscape (turned clockwise), so it is
    turned a quarter back: the fax page is the upright portrait page."""
    import pikepdf

    with pikepdf.open(io.BytesIO(samples.pdf(1))) as doc:
        doc.pages[0].Rotate = 90
        out = io.BytesIO()
        doc.save(out)
    fax = render.render_document(out.getvalue(), "application/pdf", sandbox=sandbox)
    assert fax.page_sizes == (A4_FINE,)
    plain = render.render_document(samples.pdf(1), "application/pdf", sandbox=sandbox)
    turned = np.asarray(frames(fax.tiff)[0].convert("L")) < 128
    upright = np.asarray(frames(plain.tiff)[0].convert("L")) < 128
    assert abs(int(turned.sum()) - int(upright.sum())) < 0.02 * upright.sum()
    assert (turned & upright).sum() > 0.9 * upright.sum()


@pytest.mark.slow
def test_one_and_two_threads_give_the_same_fax(sandbox: Sandbox) -> None:
    """Nine pages, each with its own number: byte-identical, so complete and in order."""
    data = samples.pdf(9)
    one = render.render_document(data, "application/pdf", sandbox=sandbox,
                                 limits=render.Limits(threads=1))  # fmt: skip
    two = render.render_document(data, "application/pdf", sandbox=sandbox,
                                 limits=render.Limits(threads=2))  # fmt: skip
    auto = render.render_document(data, "application/pdf", sandbox=sandbox)
    assert two.pages == 9 and two.tiff == one.tiff == auto.tiff
    assert one.cpu_seconds > 0 and two.cpu_seconds > 0
