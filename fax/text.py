"""Plain text and cover sheets as grey A4 pages: DejaVu Sans, wrapped, 20 mm margins.

Text is drawn on square pixels at the line's horizontal density (1728 px across A4, about
209 dpi) and then squeezed to the fax's vertical resolution, so glyphs keep their shape.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from fax.pages import A4_IN, FAX_WIDTH, Resolution, a4_rows

# Debian's fonts-dejavu-core (the Makefile installs it); DEJAVU_DIRS lists other homes.
DEJAVU_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/TTF",
               "/usr/share/fonts/dejavu")  # fmt: skip
DPI = FAX_WIDTH / A4_IN[0]  # ~209.1: square pixels as wide as the fax line's
MARGIN_IN = 20 / 25.4
TAB = 4


def font_path(bold: bool = False) -> Path:
    """DejaVu Sans (or its bold face) on this machine."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for folder in DEJAVU_DIRS:
        path = Path(folder) / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name} not found (install fonts-dejavu-core)")


@lru_cache(maxsize=16)
def _font(points: float, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path(bold)), round(points * DPI / 72))


@dataclass(frozen=True)
class Line:
    """One line of a page: its text, size in points and weight."""

    text: str
    points: float = 11.0
    bold: bool = False
    space_before: float = 0.0  # points


def wrap(text: str, points: float = 11.0, bold: bool = False) -> list[Line]:
    """Paragraphs of ``text`` wrapped to the A4 text width (long words broken)."""
    font = _font(points, bold)
    width_px = (A4_IN[0] - 2 * MARGIN_IN) * DPI
    avg = max(1.0, font.getlength("abcdefghijklmnopqrstuvwxyz ") / 27)
    lines: list[Line] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        para = raw.expandtabs(TAB).rstrip()
        if not para:
            lines.append(Line("", points, bold))
            continue
        chars = max(8, int(width_px / avg))
        while True:
            parts = textwrap.wrap(para, chars, break_long_words=True, replace_whitespace=False,
                                  drop_whitespace=True) or [""]  # fmt: skip
            if all(font.getlength(p) <= width_px for p in parts) or chars <= 8:
                break
            chars -= max(1, chars // 20)
        lines.extend(Line(p, points, bold) for p in parts)
    return lines


def pages(lines: list[Line], res: Resolution) -> Iterator[np.ndarray]:
    """Grey fax pages (1728 wide, A4 long at ``res``) holding ``lines`` in order."""
    square_h = round(A4_IN[1] * DPI)
    margin = round(MARGIN_IN * DPI)
    bottom_limit = square_h - margin
    canvas: Image.Image | None = None
    draw: ImageDraw.ImageDraw | None = None
    y = margin
    for line in lines:
        font = _font(line.points, line.bold)
        step = round(line.points * 1.35 * DPI / 72)
        before = round(line.space_before * DPI / 72)
        if canvas is None or y + before + step > bottom_limit:
            if canvas is not None:
                yield _squeeze(canvas, res)
            canvas = Image.new("L", (FAX_WIDTH, square_h), 255)
            draw = ImageDraw.Draw(canvas)
            y = margin
            before = 0
        y += before
        if line.text:
            assert draw is not None
            draw.text((margin, y), line.text, fill=0, font=font)
        y += step
    if canvas is None:
        canvas = Image.new("L", (FAX_WIDTH, square_h), 255)
    yield _squeeze(canvas, res)


def _squeeze(canvas: Image.Image, res: Resolution) -> np.ndarray:
    small = canvas.resize((FAX_WIDTH, a4_rows(res)), Image.Resampling.BOX)
    return np.asarray(small)


def cover_lines(
    to: str = "",
    sender: str = "",
    subject: str = "",
    note: str = "",
    pages_total: int | None = None,
) -> list[Line]:
    """The lines of a cover sheet: a heading, the fields, then the note."""
    lines = [Line("FAX", 36, True)]
    fields = [("To", to), ("From", sender), ("Subject", subject)]
    if pages_total is not None:
        fields.append(("Pages", f"{pages_total} including this cover"))
    first = True
    for label, value in fields:
        if not value:
            continue
        wrapped = wrap(f"{label}: {value}", 14)
        for i, item in enumerate(wrapped):
            gap = (18 if first else 6) if i == 0 else 0
            lines.append(Line(item.text, 14, space_before=gap))
        first = False
    if note:
        body = wrap(note, 12)
        if body:
            body[0] = Line(body[0].text, body[0].points, body[0].bold, space_before=24)
        lines.extend(body)
    return lines
