"""Documents -> grey pages -> TIFF-F: the conversion itself (it runs in the sandbox).

PDF pages are rasterised by PDFium straight into the fax page's pixel box (its own
anisotropic scale, so no resampling), with filled form fields drawn (``init_forms``).
Images (PNG, JPEG, TIFF, every frame) are decoded by Pillow under a pixel limit, turned
upright (EXIF), flattened on white and scaled into their box. Text becomes A4 pages. Each
grey page is then binarized (``fax.halftone``) and G4-coded (``fax.tiff``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps

from fax import halftone, pipeline, text, tiff
from fax.document_errors import (
    BrokenDocument,
    EncryptedDocument,
    TooLarge,
    TooManyPages,
    UnsupportedType,
)
from fax.pages import FAX_WIDTH, Resolution, a4_rows, place, resolution

PDF, PNG, JPEG = "application/pdf", "image/png", "image/jpeg"
TIFF, TEXT = "image/tiff", "text/plain"
# Pillow decodes nothing larger (its own bomb check is set to the same figure below).
DEFAULT_MAX_PIXELS = 50_000_000
# Acrobat's rule: the end-of-file marker sits in the last 1024 bytes; a file without one
# was cut short, and PDFium would silently render whatever survived.
EOF_WINDOW = 1024


@dataclass(frozen=True)
class Options:
    """What the conversion may do: resolution, page and pixel limits, threads."""

    res: Resolution
    max_pages: int = 50
    max_pixels: int = DEFAULT_MAX_PIXELS
    # 2: a page is G4-coded while the next one is drawn (fax.pipeline); 0: so when the
    # machine has an idle core (two busy threads on a busy machine only cost more CPU).
    threads: int = 1


@dataclass(frozen=True)
class Result:
    """The converted fax and the page count the document declared."""

    tiff: bytes
    declared_pages: int


def sniff(data: bytes, content_type: str) -> str:
    """The document type from its first bytes (text only when declared and UTF-8)."""
    head = data[:1024]
    if b"%PDF-" in head:
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    declared = content_type.split(";")[0].strip().lower()
    if declared == TEXT:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedType("the text is not UTF-8") from None
        return TEXT
    raise UnsupportedType(
        f"{declared or 'unknown'} is not a PDF, PNG, JPEG, TIFF or plain text document"
    )


def convert(data: bytes, content_type: str, opts: Options) -> Result:
    """The document as a TIFF-F file, or a DocumentError saying why not."""
    kind = sniff(data, content_type)
    if kind == PDF:
        count, grey = _pdf_pages(data, opts)
    elif kind == TEXT:
        lines = text.wrap(data.decode("utf-8").lstrip("\ufeff"))
        grey = text.pages(lines, opts.res)
        count = -1  # known once laid out
    else:
        count, grey = _image_pages(data, opts)
    threaded = count != 1 and (opts.threads == 2 or (opts.threads == 0 and _idle_core()))
    with pipeline.Coder(threaded) as coder:
        for page in grey:
            if coder.pages >= opts.max_pages:
                raise TooManyPages(f"the text runs to more than {opts.max_pages} pages")
            coder.add(halftone.black_bits(page, opts.res), page.shape[1])
        strips = coder.strips()
    if count < 0:
        count = len(strips)
    if len(strips) != count:
        raise BrokenDocument(f"rendered {len(strips)} of the document's {count} pages")
    return Result(tiff.assemble(strips, opts.res), count)


def _idle_core() -> bool:
    """Whether a core is idle now (the 1-minute load average, this conversion included,
    at least one below the number of CPUs)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    cpus = os.cpu_count() or 1
    return cpus > 1 and load <= cpus - 1


def cover(lines: list[text.Line], res: Resolution, max_pages: int) -> bytes:
    """A cover sheet's lines as a TIFF-F file."""
    pages: list[np.ndarray] = []
    for page in text.pages(lines, res):
        if len(pages) >= max_pages:
            raise TooManyPages(f"the cover note runs to more than {max_pages} pages")
        pages.append(halftone.binarize(page, res))
    return tiff.encode(pages, res)


# -- PDF -----------------------------------------------------------------------------------
def pdf_grey_pages(data: bytes, opts: Options) -> tuple[int, list[np.ndarray]]:
    """The PDF's page count and its grey fax pages, before binarization (trusted input
    only: this runs in the caller's process, e.g. for a benchmark's reference)."""
    count, pages = _pdf_pages(data, opts)
    return count, [page.copy() for page in pages]


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    if b"%%EOF" not in data[-EOF_WINDOW:]:
        raise BrokenDocument("the PDF is truncated (no end-of-file marker)")
    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
            raise EncryptedDocument("the PDF is protected by a password") from None
        raise BrokenDocument(f"the PDF cannot be read ({exc})") from None
    return pdf


def _pdf_pages(data: bytes, opts: Options) -> tuple[int, Iterator[np.ndarray]]:
    pdf = _open_pdf(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an XFA form we cannot load still renders its AcroForm
        pdf.init_forms()
    count = len(pdf)
    if count < 1:
        raise BrokenDocument("the PDF has no pages")
    if count > opts.max_pages:
        raise TooManyPages(f"the PDF has {count} pages, more than the {opts.max_pages} allowed")
    return count, _render_pdf(pdf, range(count), opts.res)


def _render_pdf(pdf: pdfium.PdfDocument, pages: range, res: Resolution) -> Iterator[np.ndarray]:
    flags = pdfium_c.FPDF_ANNOT
    # One bitmap, reused while the page size stays: a new 4 MB buffer per page would be
    # faulted in (and zeroed) page by page, a millisecond of system time each.
    bitmap: pdfium.PdfBitmap | None = None
    pixels = np.zeros((0, 0), np.uint8)
    for index in pages:
        try:
            page = pdf[index]
        except pdfium.PdfiumError as exc:
            raise BrokenDocument(f"page {index + 1} cannot be read ({exc})") from None
        width_pt, height_pt = page.get_size()
        try:
            spot = place(width_pt / 72, height_pt / 72, res)
        except ValueError:
            raise BrokenDocument(f"page {index + 1} has no size") from None
        if bitmap is None or pixels.shape != (spot.height, spot.width):
            if bitmap is not None:
                bitmap.close()
            bitmap = pdfium.PdfBitmap.new_native(spot.width, spot.height,
                                                 pdfium_c.FPDFBitmap_Gray)  # fmt: skip
            pixels = np.asarray(bitmap.to_numpy(), np.uint8).reshape(spot.height, -1)
            pixels = pixels[:, : spot.width]
        pixels.fill(255)
        # Rotation 3 (270 degrees clockwise): a landscape page's top ends up on the left.
        args = (spot.x, spot.y, spot.w, spot.h, 3 if spot.rotate else 0, flags)
        pdfium_c.FPDF_RenderPageBitmap(bitmap, page, *args)
        if page.formenv:
            pdfium_c.FPDF_FFLDraw(page.formenv, bitmap, page, *args)
        page.close()
        # A view of PDFium's buffer, valid until the consumer asks for the next page.
        yield pixels
    if bitmap is not None:
        bitmap.close()


# -- images --------------------------------------------------------------------------------
def _image_pages(data: bytes, opts: Options) -> tuple[int, Iterator[np.ndarray]]:
    # Pillow's own bomb check, set deliberately: it refuses (instead of warning about)
    # anything over our limit before decoding a pixel.
    Image.MAX_IMAGE_PIXELS = opts.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(f"the image has more than {opts.max_pixels:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BrokenDocument(f"the image cannot be read ({exc})") from None
    count = getattr(img, "n_frames", 1)
    if count > opts.max_pages:
        raise TooManyPages(f"the image has {count} pages, more than the {opts.max_pages} allowed")
    return count, _image_frames(img, count, opts)


def _image_frames(img: Image.Image, count: int, opts: Options) -> Iterator[np.ndarray]:
    for frame in range(count):
        try:
            img.seek(frame)
            if img.width * img.height > opts.max_pixels:
                raise TooLarge(f"page {frame + 1} has {img.width} x {img.height} pixels, "
                               f"more than {opts.max_pixels:,}")  # fmt: skip
            inches = _physical(img)
            if img.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale when that still covers a fax page:
                # a large photo then costs a fraction of the time and memory.
                img.draft("L", (a4_rows(opts.res) * 2, a4_rows(opts.res) * 2))
            grey = _flatten(img)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise BrokenDocument(f"page {frame + 1} cannot be decoded ({exc})") from None
        yield _fit(grey, inches, opts.res)


def _flatten(img: Image.Image) -> Image.Image:
    """The frame upright, in grey, transparent parts white."""
    upright = ImageOps.exif_transpose(img) or img
    if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
        rgba = upright.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        upright = Image.alpha_composite(back, rgba)
    return upright.convert("L")


def _physical(img: Image.Image) -> tuple[float, float] | None:
    """The image's size in inches when its resolution is believable, else None."""
    dpi = img.info.get("dpi")
    try:
        xdpi, ydpi = (float(v) for v in dpi) if dpi else (0.0, 0.0)
    except (TypeError, ValueError):
        return None
    if not (50 <= xdpi <= 2400 and 50 <= ydpi <= 2400):
        return None
    w, h = img.width / xdpi, img.height / ydpi
    return (w, h) if min(w, h) >= 2 and max(w, h) <= 20 else None


def _fit(grey: Image.Image, inches: tuple[float, float] | None, res: Resolution) -> np.ndarray:
    if inches is None:
        spot = place(grey.width, grey.height, res, paper=False)
    else:
        spot = place(*inches, res)
    if spot.rotate:
        grey = grey.transpose(Image.Transpose.ROTATE_90)
    if grey.size != (spot.w, spot.h):
        grey = grey.resize((spot.w, spot.h), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if (spot.w, spot.h) == (spot.width, spot.height):
        return np.asarray(grey)
    page = Image.new("L", (spot.width, spot.height), 255)
    page.paste(grey, (spot.x, spot.y))
    return np.asarray(page)


# -- the sandbox's entry -------------------------------------------------------------------
def sandbox_worker(header: dict[str, Any], document: bytes) -> tuple[dict[str, Any], bytes]:
    """Run one conversion ordered by ``fax.render`` (in the sandbox's child process)."""
    res = resolution(str(header["resolution"]))
    if header["op"] == "cover":
        fields = json.loads(document)
        data = cover(text.cover_lines(**fields), res, int(header["max_pages"]))
        return {"pages": data_pages(data), "declared": -1}, data
    opts = Options(res, int(header["max_pages"]), int(header["max_pixels"]),
                   max(0, min(2, int(header.get("threads", 1)))))  # fmt: skip
    result = convert(document, str(header["content_type"]), opts)
    return {"pages": data_pages(result.tiff), "declared": result.declared_pages}, result.tiff


def data_pages(data: bytes) -> int:
    """The number of IFDs in a TIFF we wrote (``fax.tiff.assemble``)."""
    return len(tiff.ifd_offsets(data))


# -- the zygote's warm-up ------------------------------------------------------------------
def tiny_pdf(fonts: Sequence[str] = ("Helvetica", "Helvetica-Bold", "Times-Roman", "Courier",
                                     "Arial", "Arial,Bold", "Verdana")) -> bytes:  # fmt: skip
    """A one-page PDF with a line in each of ``fonts`` (not embedded), for the warm-up."""
    text = " ".join(
        f"BT /F{i} 11 Tf 72 {770 - 14 * i} Td (Warm up 0123) Tj ET" for i in range(len(fonts))
    )
    content = text.encode()
    font_refs = " ".join(f"/F{i} {5 + i} 0 R" for i in range(len(fonts)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            b"/Resources << /Font << " + font_refs.encode() + b" >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        *(f"<< /Type /Font /Subtype /Type1 /BaseFont /{name} >>".encode() for name in fonts),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def warm_up() -> None:
    """Convert one small document of each kind, so that every child forked afterwards
    starts with PDFium's fonts, Pillow's plugins, the text font, libtiff and the screens
    already loaded (each child would otherwise load them again)."""
    import contextlib

    Image.init()
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, "PNG")
    for res in (resolution("fine"), resolution("standard")):
        opts = Options(res)
        convert(tiny_pdf(), PDF, opts)
        convert(buf.getvalue(), PNG, opts)
        convert(b"Warm up", TEXT, opts)
        cover(text.cover_lines(to="warm", note="up"), res, 1)
        for rows in (a4_rows(res), round(11 * res.ydpi)):
            halftone.screen(rows, FAX_WIDTH, res.ydpi)
    with contextlib.suppress(Exception):
        text.font_path(bold=True)
