"""Documents -> fax pages and back: the public API of fax rendering.

The fax channel, email-to-fax and the portal call these. Every conversion of a document
runs in a sandboxed child process (``fax.sandbox``) with a time and memory budget, and
its pages are checked against what the document declared before anything is returned::

    fax = render_document(pdf_bytes, "application/pdf")          # RenderedFax
    cover = render_cover(to="+49 30 1234", sender="Bench GmbH", note="Please sign.")
    whole = combine([cover, fax])                                 # one TIFF-F, in order
    pdf = pages_to_pdf(whole.tiff); png = thumbnail(whole.tiff)

Refusals are ``fax.document_errors.DocumentError`` (``code``: encrypted, broken,
too_many_pages, too_large, timeout, unsupported_type; ``reason``: a sentence). From asyncio
use the ``*_async`` variants: the waiting happens in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import signal
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fax import tiff
from fax.document_errors import (
    BrokenDocument,
    DocumentError,
    RenderTimeout,
    TooLarge,
    TooManyPages,
    from_code,
)
from fax.pages import FAX_WIDTH, resolution
from fax.sandbox import DEADLINE, SIGNALLED, Outcome, Sandbox

__all__ = [
    "DocumentError",
    "Limits",
    "RenderedFax",
    "combine",
    "pages_to_pdf",
    "render_cover",
    "render_cover_async",
    "render_document",
    "render_document_async",
    "render_text",
    "render_text_async",
    "thumbnail",
]


@dataclass(frozen=True)
class Limits:
    """The budget of one conversion: input bytes, decoded pixels per image, memory on top
    of the renderer's own, seconds (wall clock, and CPU), and threads: with 2, a page is
    G4-coded while the next one is drawn (``fax.pipeline``); None (the default): so when
    the machine has an idle core, else 1."""

    max_bytes: int = 50 << 20
    max_pixels: int = 50_000_000
    memory: int = 1 << 30
    seconds: float = 60.0
    threads: int | None = None


@dataclass(frozen=True)
class RenderedFax:
    """A TIFF-F fax: the file, its page count, each page's (width, height) in pixels, the
    resolution name, and the CPU seconds its conversion took."""

    tiff: bytes
    pages: int
    page_sizes: tuple[tuple[int, int], ...]
    resolution: str
    cpu_seconds: float = 0.0


_sandbox: Sandbox | None = None
_sandbox_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process's shared sandbox (its zygote starts at first use, stops at exit)."""
    global _sandbox
    with _sandbox_lock:
        if _sandbox is None:
            _sandbox = Sandbox()
            atexit.register(_sandbox.close)
        return _sandbox


def render_document(data: bytes, content_type: str, *, resolution: str = "fine",
                    max_pages: int = 50, limits: Limits | None = None,
                    sandbox: Sandbox | None = None) -> RenderedFax:  # fmt: skip
    """A PDF, PNG, JPEG, TIFF or UTF-8 text document as fax pages (TIFF-F, G4)."""
    limits = limits or Limits()
    res = _resolution(resolution)
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"the document has {len(data):,} bytes, more than {limits.max_bytes:,}")
    if not data:
        raise BrokenDocument("the document is empty")
    header = {"op": "document", "content_type": content_type, "resolution": res,
              "max_pages": max_pages, "max_pixels": limits.max_pixels}  # fmt: skip
    return _run(header, data, res, limits, sandbox, max_pages)


def render_text(text: str, *, resolution: str = "fine", max_pages: int = 50,
                limits: Limits | None = None,
                sandbox: Sandbox | None = None) -> RenderedFax:  # fmt: skip
    """Plain text as A4 fax pages (DejaVu Sans 11 pt, wrapped, 20 mm margins)."""
    return render_document(text.encode("utf-8") or b"\n", "text/plain; charset=utf-8",
                           resolution=resolution, max_pages=max_pages, limits=limits,
                           sandbox=sandbox)  # fmt: skip


def render_cover(*, to: str = "", sender: str = "", subject: str = "", note: str = "",
                 pages: int | None = None, resolution: str = "fine", max_pages: int = 5,
                 limits: Limits | None = None,
                 sandbox: Sandbox | None = None) -> RenderedFax:  # fmt: skip
    """A cover sheet (the fax API's ``cover``: to, from, subject, note; optionally the
    total page count), a long note running on to further pages."""
    limits = limits or Limits()
    res = _resolution(resolution)
    fields = {"to": to, "sender": sender, "subject": subject, "note": note,
              "pages_total": pages}  # fmt: skip
    body = json.dumps(fields).encode()
    if len(body) > limits.max_bytes:
        raise TooLarge("the cover note is too long")
    header = {"op": "cover", "resolution": res, "max_pages": max_pages}
    return _run(header, body, res, limits, sandbox, max_pages)


async def render_document_async(data: bytes, content_type: str,
                                **kwargs: Any) -> RenderedFax:  # fmt: skip
    """``render_document`` without blocking the event loop."""
    return await asyncio.to_thread(render_document, data, content_type, **kwargs)


async def render_text_async(text: str, **kwargs: Any) -> RenderedFax:
    """``render_text`` without blocking the event loop."""
    return await asyncio.to_thread(render_text, text, **kwargs)


async def render_cover_async(**kwargs: Any) -> RenderedFax:
    """``render_cover`` without blocking the event loop."""
    return await asyncio.to_thread(render_cover, **kwargs)


def combine(parts: Sequence[RenderedFax | bytes], *, max_pages: int | None = None) -> RenderedFax:
    """Several faxes (e.g. a cover and the attachments) as one, in order; all parts must
    have the same resolution."""
    files = [p.tiff if isinstance(p, RenderedFax) else p for p in parts]
    data = tiff.combine(files)
    fax = _describe(data, sum(p.cpu_seconds for p in parts if isinstance(p, RenderedFax)))
    if max_pages is not None and fax.pages > max_pages:
        raise TooManyPages(f"the fax has {fax.pages} pages, more than the {max_pages} allowed")
    return fax


def pages_to_pdf(data: bytes) -> bytes:
    """Fax pages as a PDF, losslessly (img2pdf: the G4 data as it is), at their true size."""
    return tiff.to_pdf(data)


def thumbnail(data: bytes, page: int = 1, width: int = 300) -> bytes:
    """A PNG of one page (1-based), ``width`` pixels wide, at the page's true aspect."""
    return tiff.thumbnail(data, page, width)


# -- internals -----------------------------------------------------------------------------
def _resolution(name: str) -> str:
    try:
        return resolution(name).name
    except ValueError as exc:
        raise ValueError(str(exc)) from None


def _run(header: dict[str, Any], body: bytes, res: str, limits: Limits,
         sandbox: Sandbox | None, max_pages: int) -> RenderedFax:  # fmt: skip
    header = {**header, "memory": limits.memory, "cpu": limits.seconds,
              "threads": 0 if limits.threads is None else limits.threads}  # fmt: skip
    outcome = (sandbox or default_sandbox()).run(header, body, timeout=limits.seconds)
    if outcome.status == b"O":
        return _checked(outcome, res, max_pages)
    if outcome.status == b"E":
        raise from_code(str(outcome.header.get("code")), str(outcome.header.get("reason")))
    raise _failure(outcome, limits)


def _failure(outcome: Outcome, limits: Limits) -> DocumentError:
    if outcome.how == DEADLINE:
        return RenderTimeout(f"converting the document took longer than {limits.seconds:g} s")
    if outcome.how == SIGNALLED and outcome.code in (signal.SIGXCPU, signal.SIGKILL):
        return RenderTimeout(f"converting the document needed more than {limits.seconds:g} s "
                             "of CPU time")  # fmt: skip
    if outcome.how == SIGNALLED:
        name = signal.Signals(outcome.code).name if outcome.code in signal.valid_signals() else ""
        return BrokenDocument(f"the renderer crashed on the document ({name or outcome.code}; "
                              "it may need more memory than allowed)")  # fmt: skip
    return BrokenDocument(f"the renderer stopped without an answer (exit {outcome.code})")


def _checked(outcome: Outcome, res: str, max_pages: int) -> RenderedFax:
    """The child's fax, after checking its pages against what the document declared."""
    try:
        fax_infos = tiff.pages(outcome.payload)
        fax = _describe(outcome.payload, outcome.cpu_seconds, fax_infos)
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise BrokenDocument(f"the conversion produced no readable fax ({exc})") from None
    reported, declared = outcome.header.get("pages"), outcome.header.get("declared")
    if reported != fax.pages or (declared not in (-1, None) and declared != fax.pages):
        raise BrokenDocument(f"the document has {declared} pages but {fax.pages} were rendered")
    if fax.pages > max_pages:
        raise TooManyPages(f"the fax has {fax.pages} pages, more than the {max_pages} allowed")
    want = resolution(res).dpi
    for number, info in enumerate(fax_infos, 1):
        if info.width != FAX_WIDTH or (round(info.xdpi), round(info.ydpi)) != want:
            raise BrokenDocument(f"page {number} came out {info.width} px at "
                                 f"{info.xdpi:g}x{info.ydpi:g} dpi")  # fmt: skip
    return fax


def _describe(data: bytes, cpu_seconds: float,
              infos: list[tiff.PageInfo] | None = None) -> RenderedFax:  # fmt: skip
    infos = tiff.pages(data) if infos is None else infos
    ydpi = round(infos[0].ydpi) if infos else 196
    return RenderedFax(data, len(infos), tuple((i.width, i.height) for i in infos),
                       "fine" if ydpi >= 150 else "standard", cpu_seconds)  # fmt: skip
