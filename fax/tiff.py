"""TIFF-F files: G4 pages with the fax tags, reading them back, PDF and thumbnails.

Each page is its own IFD: 1 bit, CCITT T.6 (G4), min-is-white, ResolutionUnit inch with
204 x 196 (fine) or 204 x 98 (standard), SubfileType "page" and PageNumber (index, total).
Pages go into a PDF with img2pdf, which copies the G4 data as it is (CCITTFaxDecode): no
re-encoding, and the PDF page has the fax page's true size from its resolution.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import img2pdf
import numpy as np
from PIL import Image, ImageOps

from fax import g4, t6
from fax.pages import FAX_WIDTH, Resolution

# Tags of a TIFF-F page, written in ascending order: (tag, type, value); types 3 SHORT,
# 4 LONG, 5 RATIONAL, 2 ASCII.
SHORT, LONG, RATIONAL, ASCII = 3, 4, 5, 2
SOFTWARE_NAME = b"messaging-gateway fax\0"


@dataclass(frozen=True)
class PageInfo:
    """One page of a TIFF-F file: pixels and resolution (dpi)."""

    width: int
    height: int
    xdpi: float
    ydpi: float


_encoder: g4.Encoder | None = None
_encoder_loaded = False


def g4_strip(white: np.ndarray) -> bytes:
    """The T.6 (G4) code of a page (True = white), min-is-white: white runs are 0 bits."""
    return g4_code(np.packbits(~white, axis=1), white.shape[1])


def g4_code(packed: np.ndarray, width: int) -> bytes:
    """The T.6 (G4) code of a page packed eight pixels a byte, 1 bits black: by the
    compiled coder (``fax.t6``), else libtiff's (``fax.g4``), else through Pillow."""
    if t6.available():
        return t6.code(packed, width)
    return libtiff_g4_code(packed, width)


def libtiff_g4_code(packed: np.ndarray, width: int) -> bytes:
    """``g4_code`` by libtiff (through Pillow when libtiff cannot be loaded directly)."""
    global _encoder, _encoder_loaded
    if not _encoder_loaded:
        _encoder, _encoder_loaded = g4.load(), True
    if _encoder is not None:
        return _encoder.code(packed, width)
    return pillow_g4_code(packed, width)


def pillow_g4_strip(white: np.ndarray) -> bytes:
    """``g4_strip`` through Pillow (the same libtiff codec, slower: see ``fax.g4``)."""
    return pillow_g4_code(np.packbits(~white, axis=1), white.shape[1])


def pillow_g4_code(packed: np.ndarray, width: int) -> bytes:
    """``g4_code`` through Pillow."""
    h = packed.shape[0]
    # Pillow labels mode "1" min-is-black, so hand it the black pixels as 1 bits: libtiff
    # then codes our white as G4 white runs, and the code is the min-is-white page.
    black = Image.frombytes("1", (width, h), np.ascontiguousarray(packed, np.uint8).tobytes())
    buf = io.BytesIO()
    black.save(buf, "TIFF", compression="group4", strip_size=1 << 30)
    with Image.open(buf) as tif:
        tags = getattr(tif, "tag_v2", {})
        offsets, counts = tags[273], tags[279]
    if len(offsets) != 1:
        raise RuntimeError("expected one strip")
    data = buf.getvalue()
    return data[offsets[0] : offsets[0] + counts[0]]


def _ifd(
    width: int,
    height: int,
    res: Resolution,
    page: int,
    total: int,
    strip_at: int,
    strip_len: int,
    ifd_at: int,
) -> tuple[bytes, bytes]:
    """An IFD at ``ifd_at`` (its next-IFD link left 0) and the values stored after it."""
    tags = [
        (254, LONG, [2]),  # NewSubfileType: a page of a multi-page document
        (256, SHORT, [width]),
        (257, LONG, [height]),
        (258, SHORT, [1]),  # BitsPerSample
        (259, SHORT, [4]),  # Compression: CCITT T.6 (G4)
        (262, SHORT, [0]),  # Photometric: min-is-white
        (266, SHORT, [1]),  # FillOrder: msb first
        (273, LONG, [strip_at]),  # StripOffsets
        (274, SHORT, [1]),  # Orientation: top left
        (277, SHORT, [1]),  # SamplesPerPixel
        (278, LONG, [height]),  # RowsPerStrip: the page is one strip
        (279, LONG, [strip_len]),  # StripByteCounts
        (282, RATIONAL, [res.dpi[0], 1]),  # XResolution
        (283, RATIONAL, [res.dpi[1], 1]),  # YResolution
        (284, SHORT, [1]),  # PlanarConfiguration
        (293, LONG, [0]),  # T6Options
        (296, SHORT, [2]),  # ResolutionUnit: inch
        (297, SHORT, [page, total]),  # PageNumber
        (305, ASCII, SOFTWARE_NAME),  # Software
    ]
    size = {SHORT: 2, LONG: 4, RATIONAL: 8, ASCII: 1}
    extra_at = ifd_at + 2 + 12 * len(tags) + 4
    entries, extra = [struct.pack("<H", len(tags))], b""
    for tag, kind, value in tags:
        if kind == ASCII:
            assert isinstance(value, bytes)
            raw, count = value, len(value)
        else:
            assert isinstance(value, list)
            fmt = {SHORT: "H", LONG: "I", RATIONAL: "I"}[kind]
            raw = struct.pack(f"<{len(value)}{fmt}", *value)
            count = len(raw) // size[kind]
        if len(raw) <= 4:
            entries.append(struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0"))
        else:
            entries.append(struct.pack("<HHII", tag, kind, count, extra_at + len(extra)))
            extra += raw + b"\0" * (len(raw) % 2)
    entries.append(struct.pack("<I", 0))
    return b"".join(entries), extra


def assemble(strips: Sequence[tuple[int, int, bytes]], res: Resolution) -> bytes:
    """A TIFF-F file from G4 strips ``(width, height, code)``, one IFD per page."""
    if not strips:
        raise ValueError("a fax has at least one page")
    out = bytearray(b"II*\0\0\0\0\0")
    link_at = 4  # where the offset of the next IFD goes
    for index, (width, height, code) in enumerate(strips):
        if width != FAX_WIDTH:
            raise ValueError(f"page {index + 1} is {width} pixels wide, not {FAX_WIDTH}")
        strip_at = len(out)
        out += code + b"\0" * (len(code) % 2)
        ifd_at = len(out)
        ifd, extra = _ifd(width, height, res, index, len(strips), strip_at, len(code), ifd_at)
        struct.pack_into("<I", out, link_at, ifd_at)
        link_at = ifd_at + len(ifd) - 4
        out += ifd + extra
    return bytes(out)


def encode(pages: Sequence[np.ndarray], res: Resolution) -> bytes:
    """Pages (boolean arrays, True = white, 1728 wide) as one TIFF-F file."""
    return assemble([(p.shape[1], p.shape[0], g4_strip(p)) for p in pages], res)


def combine(files: Sequence[bytes]) -> bytes:
    """Several TIFF-F files as one, in order, with the page numbers redone."""
    pages: list[np.ndarray] = []
    res: Resolution | None = None
    for data in files:
        with Image.open(io.BytesIO(data)) as tif:
            for frame in range(getattr(tif, "n_frames", 1)):
                tif.seek(frame)
                ydpi = round(float(tif.info.get("dpi", (204, 196))[1]))
                if res is None:
                    res = Resolution("fine" if ydpi >= 150 else "standard", ydpi)
                elif res.ydpi != ydpi:
                    raise ValueError("cannot combine fine and standard pages in one fax")
                pages.append(np.asarray(tif.convert("L")) >= 128)
    if res is None:
        raise ValueError("nothing to combine")
    return encode(pages, res)


def pages(data: bytes) -> list[PageInfo]:
    """The pages of a TIFF file (without decoding them)."""
    try:
        return _read_pages(data)
    except (ValueError, struct.error):
        pass  # not a plain classic TIFF: let Pillow read it (or say what is wrong)
    out = []
    with Image.open(io.BytesIO(data)) as tif:
        for frame in range(getattr(tif, "n_frames", 1)):
            tif.seek(frame)
            xdpi, ydpi = tif.info.get("dpi", (0, 0))
            out.append(PageInfo(tif.width, tif.height, float(xdpi), float(ydpi)))
    return out


def _read_pages(data: bytes) -> list[PageInfo]:
    """``pages`` of a classic TIFF read straight from its IFDs (a 30-page fax: 0.1 ms
    instead of Pillow's 4 ms); ValueError or struct.error for anything else."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or struct.unpack_from(order + "H", data, 2)[0] != 42:
        raise ValueError("not a classic TIFF")
    sizes = {SHORT: 2, LONG: 4}
    out: list[PageInfo] = []
    seen: set[int] = set()
    (at,) = struct.unpack_from(order + "I", data, 4)
    while at:
        if at in seen or len(seen) > 10_000:
            raise ValueError("IFD loop")
        seen.add(at)
        (count,) = struct.unpack_from(order + "H", data, at)
        tags: dict[int, float] = {}
        for i in range(count):
            tag, kind, n, _ = struct.unpack_from(order + "HHII", data, at + 2 + 12 * i)
            field = at + 2 + 12 * i + 8
            if tag in (256, 257, 296) and n == 1 and kind in sizes:
                fmt = order + ("H" if kind == SHORT else "I")
                tags[tag] = struct.unpack_from(fmt, data, field)[0]
            elif tag in (282, 283) and n == 1 and kind == RATIONAL:
                (where,) = struct.unpack_from(order + "I", data, field)
                num, den = struct.unpack_from(order + "II", data, where)
                tags[tag] = num / den if den else 0.0
        if 256 not in tags or 257 not in tags:
            raise ValueError("a page without a size")
        # As Pillow: resolution in inches unless the unit says centimetres (or none).
        unit = tags.get(296, 2)
        scale = {2: 1.0, 3: 2.54}.get(int(unit), 0.0)
        out.append(PageInfo(int(tags[256]), int(tags[257]), tags.get(282, 0.0) * scale,
                            tags.get(283, 0.0) * scale))  # fmt: skip
        (at,) = struct.unpack_from(order + "I", data, at + 2 + 12 * count)
    if not out:
        raise ValueError("no pages")
    return out


def ifd_offsets(data: bytes) -> list[int]:
    """Where the IFDs of a little-endian classic TIFF start (cheap: no decoding)."""
    if data[:4] != b"II*\0":
        raise ValueError("not a little-endian TIFF")
    (at,) = struct.unpack_from("<I", data, 4)
    out: list[int] = []
    while at:
        if at in out or at + 2 > len(data):
            raise ValueError("broken IFD chain")
        out.append(at)
        (count,) = struct.unpack_from("<H", data, at)
        (at,) = struct.unpack_from("<I", data, at + 2 + 12 * count)
    return out


def to_pdf(data: bytes) -> bytes:
    """The pages as a PDF, losslessly (the G4 data copied), each at its true size."""
    pdf = img2pdf.convert(data, rotation=img2pdf.Rotation.ifvalid)
    if not isinstance(pdf, bytes):
        raise TypeError("img2pdf returned no bytes")
    return pdf


def thumbnail(data: bytes, page: int = 1, width: int = 300) -> bytes:
    """A PNG of one page (1-based), ``width`` pixels wide, at the page's true aspect."""
    with Image.open(io.BytesIO(data)) as tif:
        if not 1 <= page <= getattr(tif, "n_frames", 1):
            raise ValueError(f"no page {page}")
        tif.seek(page - 1)
        xdpi, ydpi = (float(v) for v in tif.info.get("dpi", (204, 196)))
        grey = tif.convert("L")
    height = max(1, round(width * grey.height / grey.width * xdpi / max(ydpi, 1.0)))
    small = ImageOps.autocontrast(grey.resize((width, height), Image.Resampling.BOX))
    buf = io.BytesIO()
    small.save(buf, "PNG", optimize=True)
    return buf.getvalue()
