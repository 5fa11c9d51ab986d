"""The documents ``bench/fax_render.py`` converts, generated on the spot (reportlab, Pillow,
numpy): a text page, a grey form with 7 pt text, a photo page, a landscape page, a Letter
page and a 30-page document. Deterministic: the same seed gives the same PDFs."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import numpy as np
from PIL import Image
from reportlab.lib.pagesizes import A4, landscape, letter
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

WORDS = [
    "fax", "invoice", "delivery", "order", "payment", "customer", "account", "reference",
    "number", "date", "total", "amount", "due", "please", "remit", "within", "thirty", "days",
    "contract", "service", "period", "tariff", "quota", "message", "gateway", "member", "team",
    "transmission", "page", "received", "sent", "confirmation", "signature", "address",
    "street", "city", "postal", "code", "telephone", "the", "of", "and", "to", "for", "with",
    "on", "by", "at", "from",
]


def _sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def _paragraphs(c: Canvas, rng: random.Random, x: float, y: float, width: float, bottom: float,
                size: float = 10.5, font: str = "Helvetica") -> float:
    """Fill the column from ``y`` down to ``bottom`` with wrapped text; returns the last y."""
    lead = size * 1.3
    c.setFont(font, size)
    while y > bottom:
        text = " ".join(_sentence(rng, rng.randint(6, 16)) for _ in range(rng.randint(2, 5)))
        line = ""
        for word in text.split():
            trial = f"{line} {word}".strip()
            if c.stringWidth(trial, font, size) > width:
                c.drawString(x, y, line)
                y -= lead
                line = word
                if y < bottom:
                    return y
            else:
                line = trial
        c.drawString(x, y, line)
        y -= lead * 1.6
    return y


def fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 6) -> np.ndarray:
    """Smooth random texture in [0, 1] (sum of upsampled random grids)."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for o in range(octaves):
        gh, gw = 2 + 2**o, 2 + int(2**o * w / h)
        grid = rng.random((gh, gw)).astype(np.float32)
        img = Image.fromarray((grid * 255).astype(np.uint8))
        img = img.resize((w, h), Image.Resampling.BICUBIC)
        out += amp * np.asarray(img, np.float32) / 255
        amp *= 0.55
    out -= out.min()
    return out / max(float(out.max()), 1e-6)


def photo(seed: int = 7, size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """A synthetic colour photograph: sky, clouds, mountains, a lake and a lit sphere."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    sky = np.stack([90 + 80 * yy / h, 140 + 70 * yy / h, 230 - 20 * yy / h], -1)
    clouds = fractal_noise(rng, h, w)[..., None]
    img = sky * (1 - 0.6 * clouds) + 255 * 0.6 * clouds
    ridge = fractal_noise(rng, 64, w, 5)[32] * 0.3 * h + 0.35 * h
    tex = fractal_noise(rng, h, w, 7)
    mountain = yy > ridge[None, :]
    shade = (0.35 + 0.5 * tex)[..., None] * np.array([110, 100, 80], np.float32)
    img = np.where(mountain[..., None], shade, img)
    lake = yy > 0.72 * h
    water = np.stack([40 + 60 * tex, 70 + 60 * tex, 110 + 80 * tex], -1)
    img = np.where(lake[..., None], water, img)
    cx, cy, r = 0.7 * w, 0.62 * h, 0.14 * h
    d2 = (xx - cx) ** 2 + (yy - cy) ** 2
    inside = d2 < r * r
    nz = np.sqrt(np.clip(1 - d2 / (r * r), 0, 1))
    light = np.clip(((xx - cx) / r * -0.5 + (yy - cy) / r * -0.5 + nz * 0.7), 0, 1)
    ball = (30 + 225 * light)[..., None] * np.array([1.0, 0.45, 0.3], np.float32)
    img = np.where(inside[..., None], ball, img)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _jpeg(img: Image.Image) -> ImageReader:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    buf.seek(0)
    return ImageReader(buf)


def _header(c: Canvas, width: float, height: float, title: str) -> None:
    c.setFont("Helvetica-Bold", 16)
    c.drawString(56, height - 64, title)
    c.setLineWidth(1.2)
    c.line(56, height - 72, width - 56, height - 72)


def text_page(c: Canvas, rng: random.Random, title: str = "Delivery note") -> None:
    """A4 business letter: heading, address block, body text, footer."""
    w, h = A4
    _header(c, w, h, title)
    c.setFont("Helvetica", 9)
    for i, line in enumerate(["Bench GmbH", "Musterstrasse 1", "10115 Berlin"]):
        c.drawString(56, h - 100 - 11 * i, line)
    _paragraphs(c, rng, 56, h - 160, w - 112, 90)
    c.setFont("Helvetica", 8)
    c.drawString(56, 50, "Bench GmbH - Registergericht Berlin - page 1")


def grey_form(c: Canvas, rng: random.Random) -> None:
    """A form on light grey fields and a mid-grey header band, labels in 7 pt."""
    w, h = A4
    c.setFillGray(0.55)
    c.rect(40, h - 90, w - 80, 44, stroke=0, fill=1)
    c.setFillGray(1)
    c.setFont("Helvetica-Bold", 15)
    c.drawString(52, h - 75, "APPLICATION FORM / ANTRAG")
    y = h - 120
    for row in range(18):
        for col in range(3):
            x = 40 + col * (w - 80) / 3
            fw = (w - 80) / 3 - 8
            c.setFillGray(0.88 if (row + col) % 2 else 0.93)
            c.rect(x, y - 30, fw, 30, stroke=0, fill=1)
            c.setFillGray(0)
            c.setFont("Helvetica", 7)
            c.drawString(x + 3, y - 9, f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}"
                         f" ({row + 1}.{col + 1})")
            c.setFont("Helvetica", 9)
            c.drawString(x + 3, y - 24, " ".join(rng.choice(WORDS) for _ in range(3)))
        y -= 36
    c.setFillGray(0.9)
    c.rect(40, 60, w - 80, y - 70, stroke=0, fill=1)
    c.setFillGray(0)
    c.setFont("Helvetica", 7)
    ty = y - 20
    while ty > 72:
        c.drawString(46, ty, _sentence(rng, 22)[:150])
        ty -= 9


def photo_page(c: Canvas, rng: random.Random) -> None:
    """A4 page with a large photograph, a caption and a paragraph of text."""
    w, h = A4
    _header(c, w, h, "Site inspection report")
    c.drawImage(_jpeg(photo()), 56, h - 500, width=w - 112, height=(w - 112) * 0.75)
    c.setFont("Helvetica-Oblique", 9)
    c.drawString(56, h - 515, "Figure 1: the site seen from the north-west, 9 am.")
    _paragraphs(c, rng, 56, h - 545, w - 112, 70)


def landscape_page(c: Canvas, rng: random.Random) -> None:
    """A4 landscape: a table with a grey header row and a small bar chart."""
    w, h = landscape(A4)
    _header(c, w, h, "Quarterly figures")
    cols = 8
    cw = (w - 112) / cols
    y = h - 100
    c.setFillGray(0.8)
    c.rect(56, y - 16, w - 112, 18, stroke=0, fill=1)
    c.setFillGray(0)
    for r in range(22):
        c.setFont("Helvetica-Bold" if r == 0 else "Helvetica", 8.5)
        for k in range(cols):
            head = r == 0 or k == 0
            txt = rng.choice(WORDS).capitalize() if head else f"{rng.randint(0, 99999):,}"
            c.drawString(60 + k * cw, y - 12, txt)
        c.line(56, y - 17, w - 56, y - 17)
        y -= 18
    for k in range(6):
        bh = rng.randint(10, 60)
        c.setFillGray(0.2 + 0.12 * k)
        c.rect(w - 300 + k * 40, 40, 28, bh, stroke=1, fill=1)


def letter_page(c: Canvas, rng: random.Random) -> None:
    """A US Letter page: a memo with a boxed table."""
    w, h = letter
    _header(c, w, h, "Memorandum")
    y = _paragraphs(c, rng, 56, h - 100, w - 112, 330)
    c.rect(56, 80, w - 112, y - 100)
    for i in range(1, 8):
        c.line(56, 80 + i * (y - 100) / 8, w - 56, 80 + i * (y - 100) / 8)
    c.setFont("Helvetica", 9)
    for i in range(8):
        c.drawString(62, 86 + i * (y - 100) / 8, f"Item {i + 1}: {_sentence(rng, 6)}")


def _pdf(pagesize: tuple[float, float], draw: Callable[[Canvas, random.Random], None],
         pages: int = 1, seed: int = 1) -> bytes:
    buf = io.BytesIO()
    c = Canvas(buf, pagesize=pagesize, invariant=True)
    rng = random.Random(seed)
    for _ in range(pages):
        draw(c, rng)
        c.showPage()
    c.save()
    return buf.getvalue()


def corpus() -> dict[str, bytes]:
    """Name -> PDF bytes for every page type of the benchmark."""
    return {
        "text": _pdf(A4, text_page),
        "grey_form": _pdf(A4, grey_form),
        "photo": _pdf(A4, photo_page),
        "landscape": _pdf(landscape(A4), landscape_page),
        "letter": _pdf(letter, letter_page),
        "30_pages": _pdf(A4, text_page, pages=30, seed=2),
    }
