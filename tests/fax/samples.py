"""Documents for the fax rendering tests, made on the spot (reportlab, Pillow, pikepdf)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pikepdf
from PIL import Image
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfgen.canvas import Canvas


def pdf(pages: int = 1, size: tuple[float, float] = A4, *, encrypt: str | None = None,
        grey: float | None = None) -> bytes:  # fmt: skip
    """A PDF of ``pages`` pages with a heading, a black bar and some text on each."""
    buf = io.BytesIO()
    enc = StandardEncryption(encrypt, "owner", canPrint=1) if encrypt else None
    c = Canvas(buf, pagesize=size, invariant=True, encrypt=enc)
    w, h = size
    for n in range(pages):
        if grey is not None:
            c.setFillGray(grey)
            c.rect(0, 0, w, h, stroke=0, fill=1)
            c.setFillGray(0)
        c.setFont("Helvetica-Bold", 24)
        c.drawString(72, h - 72, f"Page {n + 1}")
        c.rect(72, h - 200, 144, 72, stroke=0, fill=1)  # a black bar to find
        c.setFont("Helvetica", 11)
        for i in range(20):
            c.drawString(72, h - 240 - 14 * i, f"line {i} of page {n + 1}")
        c.showPage()
    c.save()
    return buf.getvalue()


def a4_landscape() -> bytes:
    """One A4 landscape page with a black bar at its top left."""
    return pdf(size=landscape(A4))


def letter_pdf() -> bytes:
    """One US Letter page."""
    return pdf(size=letter)


def form_pdf(value: str = "HELLO FAX FORM", *, appearance: bool = True) -> bytes:
    """A PDF with one filled text field (72 pt high letters in a large box). Without
    ``appearance`` the field has no appearance stream: only a form-filling renderer
    (PDFium after ``init_forms``) draws its value."""
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=A4, invariant=True)
    c.acroForm.textfield(name="name", value=value, x=50, y=500, width=500, height=120,
                         fontName="Helvetica", fontSize=72, borderWidth=0,
                         fillColor=None, borderColor=None)  # fmt: skip
    c.showPage()
    c.save()
    data = buf.getvalue()
    if appearance:
        return data
    with pikepdf.open(io.BytesIO(data)) as doc:
        for annot in doc.pages[0].Annots:
            if "/AP" in annot:
                del annot["/AP"]
        doc.Root.AcroForm.NeedAppearances = True
        out = io.BytesIO()
        doc.save(out)
    return out.getvalue()


def image(fmt: str, size: tuple[int, int] = (800, 600), *, mode: str = "RGB",
          dpi: tuple[int, int] | None = None, frames: int = 1) -> bytes:  # fmt: skip
    """A gradient image with a black square, in ``fmt`` (PNG, JPEG, TIFF)."""
    w, h = size
    _yy, xx = np.mgrid[0:h, 0:w]
    grey = (xx * 255 // max(1, w - 1)).astype(np.uint8)
    grey[h // 4 : h // 2, w // 4 : w // 2] = 0
    base = Image.fromarray(grey).convert(mode)
    extra = {"dpi": dpi} if dpi else {}
    buf = io.BytesIO()
    if frames > 1:
        more = [base.copy() for _ in range(frames - 1)]
        base.save(buf, fmt, save_all=True, append_images=more, **extra)
    else:
        base.save(buf, fmt, **extra)
    return buf.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))  # fmt: skip

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
