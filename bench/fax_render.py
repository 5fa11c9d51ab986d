"""Documents -> fax pages: speed, bytes per page and fidelity, beside Ghostscript.

    python -m bench.fax_render [--rounds 5] [--blur 2.0] [--no-install] [--keep DIR]

The corpus is generated on the spot (``bench/fax_corpus.py``): a text page, a grey form
with 7 pt text, a photo page, an A4 landscape page, a US Letter page and a 30-page
document. Each round converts every document with the product (``fax.render``, through
its sandbox: a forked child per document, as in production, which G4-codes a page on a
second thread while it draws the next when the machine has an idle core,
``Limits.threads``) and with Ghostscript (``gs -sDEVICE=tiffg4 -r204x196``, one process
per document), alternating which goes first. The 30-page document is also converted by
the product with one thread (``30_pages/1t``) and with two whatever the load (``/2t``).

* **pages/s**: pages over the median wall time of a document's rounds.
* **CPU ms/page**: the median CPU time a document cost, per page: the product's sandbox
  child (both its threads) and the zygote's fork, as the zygote reports them, plus this
  process's own; Ghostscript: its process. This holds up on a busy
  machine far better than wall time, so the overall speed ratio uses it.
* **KB/page**: the TIFF's bytes per page: a fax page's line time follows its size.
* **fidelity**: the mean absolute difference (0-255 grey levels, lower is better)
  between the fax page and the same renderer's greyscale page at the same resolution,
  both blurred with a Gaussian of ``--blur`` pixels (about what the eye averages at
  reading distance). The product's greyscale page is PDFium's in the fax geometry,
  anti-aliased; Ghostscript's is its own ``pnggray`` at 204x196 (text and graphics
  anti-aliased), padded like its fax page. Each pipeline is thus judged by what its
  binarization loses. A second table gives the figure at other blurs.

Ghostscript is only this benchmark's baseline (AGPL, never part of the product). When it
is missing and we run as root, ``apt-get install -y ghostscript`` (``--no-install``: no).
Goals (issue 12): speed >= 1.0x Ghostscript, bytes per page <= 1.0x, fidelity better on
every page type. The bench reports; it exits 0 whether or not the goals are met.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
from PIL import Image, ImageFilter

from bench.fax_corpus import corpus
from fax import documents, render
from fax.pages import FINE
from fax.sandbox import Sandbox

GS_ARGS = ["-q", "-dNOPAUSE", "-dBATCH", "-dSAFER", "-r204x196"]


@dataclass
class Tally:
    """What one pipeline did with one document over the rounds."""

    pages: int = 0
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    bytes: int = 0
    fidelity: dict[float, float] = field(default_factory=dict)

    def add(self, pages: int, wall: float, cpu: float, size: int) -> None:
        """One conversion of the document."""
        self.pages = pages
        self.walls.append(wall)
        self.cpus.append(cpu)
        self.bytes = size

    @property
    def wall(self) -> float:
        """The median wall time of a conversion."""
        return statistics.median(self.walls)

    @property
    def cpu(self) -> float:
        """The median CPU time of a conversion."""
        return statistics.median(self.cpus)


def ensure_gs(install: bool) -> str:
    gs = shutil.which("gs")
    if gs:
        return gs
    if install and os.geteuid() == 0:
        print("ghostscript missing: apt-get install -y ghostscript", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "ghostscript"],
                       check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
        gs = shutil.which("gs")
    if not gs:
        sys.exit("Ghostscript (gs) is needed as the baseline: apt-get install ghostscript")
    return gs


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_ours(box: Sandbox, pdf: bytes,
             threads: int | None = None) -> tuple[bytes, int, float, float]:  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    fax = render.render_document(pdf, "application/pdf", sandbox=box,
                                 limits=render.Limits(threads=threads))  # fmt: skip
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + fax.cpu_seconds
    return fax.tiff, fax.pages, wall, cpu


def run_gs(gs: str, pdf_path: Path, out: Path) -> tuple[bytes, int, float, float]:
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run([gs, *GS_ARGS, "-sDEVICE=tiffg4", f"-sOutputFile={out}", str(pdf_path)],
                   check=True, timeout=300)  # fmt: skip
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    data = out.read_bytes()
    with Image.open(io.BytesIO(data)) as tif:
        pages = getattr(tif, "n_frames", 1)
    return data, pages, wall, cpu


def fax_pages(data: bytes) -> list[np.ndarray]:
    out = []
    with Image.open(io.BytesIO(data)) as tif:
        for n in range(getattr(tif, "n_frames", 1)):
            tif.seek(n)
            out.append(np.asarray(tif.convert("L")))
    return out


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    img = Image.fromarray(a).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(img, np.float32)


def fidelity(fax: list[np.ndarray], grey: list[np.ndarray], sigma: float) -> float:
    if len(fax) != len(grey):
        raise RuntimeError(f"{len(fax)} fax pages but {len(grey)} grey pages")
    diffs = []
    for f, g in zip(fax, grey, strict=True):
        h, w = f.shape
        ref = np.full((h, w), 255, np.uint8)  # padded (or cut) like the fax page
        ref[: min(h, g.shape[0]), : min(w, g.shape[1])] = g[:h, :w]
        diffs.append(float(np.abs(blur(f, sigma) - blur(ref, sigma)).mean()))
    return float(np.mean(diffs))


BLURS = (1.0, 2.0, 3.0)  # the second table's blurs (the figure: the --blur one)


def our_grey(pdf: bytes) -> list[np.ndarray]:
    _, pages = documents.pdf_grey_pages(pdf, documents.Options(FINE, max_pages=1000))
    return pages


def gs_grey(gs: str, pdf_path: Path, tmp: Path) -> list[np.ndarray]:
    pattern = tmp / "gsgrey-%04d.png"
    subprocess.run([gs, *GS_ARGS, "-sDEVICE=pnggray", "-dTextAlphaBits=4",
                    "-dGraphicsAlphaBits=4", f"-sOutputFile={pattern}", str(pdf_path)],
                   check=True, timeout=300)  # fmt: skip
    files = sorted(tmp.glob("gsgrey-*.png"))
    pages = [np.asarray(Image.open(f).convert("L")) for f in files]
    for f in files:
        f.unlink()
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--blur", type=float, default=2.0, help="Gaussian sigma, pixels")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--keep", type=Path, help="write every fax TIFF into this directory")
    args = ap.parse_args()
    gs = ensure_gs(not args.no_install)
    gs_version = subprocess.run([gs, "--version"], capture_output=True, text=True).stdout.strip()
    docs = corpus()
    print(f"python {sys.version.split()[0]}, ghostscript {gs_version}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}, {args.rounds} rounds, blur sigma {args.blur} px")
    # (row, document, threads): the long document also with one and two threads.
    rows: list[tuple[str, str, int | None]] = [(name, name, None) for name in docs]
    for name, pdf in docs.items():
        if pdf_pages(pdf) > 1:
            rows += [(f"{name}/1t", name, 1), (f"{name}/2t", name, 2)]
    ours = {row: Tally() for row, _, _ in rows}
    base = {name: Tally() for name in docs}
    sigmas = sorted({args.blur, *BLURS})
    box = Sandbox(slots=1)
    box.start()
    try:
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            paths = {}
            for name, pdf in docs.items():
                paths[name] = tmp / f"{name}.pdf"
                paths[name].write_bytes(pdf)
            run_ours(box, docs["text"])  # warm-up: the zygote's first child
            run_gs(gs, paths["text"], tmp / "warm.tif")
            last: dict[str, tuple[bytes, bytes]] = {}
            for rnd in range(args.rounds):
                for name, pdf in docs.items():
                    mine = [(row, n) for row, doc, n in rows if doc == name]
                    order = ("ours", "gs") if rnd % 2 == 0 else ("gs", "ours")
                    for who in order:
                        if who == "gs":
                            data, pages, wall, cpu = run_gs(gs, paths[name], tmp / "gs.tif")
                            base[name].add(pages, wall, cpu, len(data))
                            last[name] = (last.get(name, (b"", b""))[0], data)
                            continue
                        for row, threads in mine:
                            data, pages, wall, cpu = run_ours(box, pdf, threads)
                            ours[row].add(pages, wall, cpu, len(data))
                        last[name] = (data, last.get(name, (b"", b""))[1])
            for name, pdf in docs.items():
                mine_tif, theirs_tif = last[name]
                our_fax, our_ref = fax_pages(mine_tif), our_grey(pdf)
                gs_fax, gs_ref = fax_pages(theirs_tif), gs_grey(gs, paths[name], tmp)
                for sigma in sigmas:
                    base[name].fidelity[sigma] = fidelity(gs_fax, gs_ref, sigma)
                    for row, doc, _ in rows:
                        if doc == name:
                            ours[row].fidelity[sigma] = fidelity(our_fax, our_ref, sigma)
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"{name}-ours.tif").write_bytes(mine_tif)
                    (args.keep / f"{name}-gs.tif").write_bytes(theirs_tif)
    finally:
        box.close()
    report(ours, base, {row: doc for row, doc, _ in rows}, args.blur, sigmas)


def pdf_pages(pdf: bytes) -> int:
    """The page count of one of the corpus's PDFs (trusted: ours)."""
    return len(pdfium.PdfDocument(pdf))


def report(ours: dict[str, Tally], base: dict[str, Tally], doc_of: dict[str, str],
           sigma: float, sigmas: list[float]) -> None:  # fmt: skip
    head = (f"{'page type':<12} {'pages':>5} | {'pages/s':>7} {'cpu ms/p':>8} {'KB/page':>7} "
            f"{'fidelity':>8} | {'gs p/s':>6} {'gs cpu':>6} {'gs KB/p':>7} {'gs fid':>6} | "
            f"{'wall x':>6} {'cpu x':>5} {'bytes x':>7} {'fid':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    better = fast_wall = fast_cpu = small = 0
    for row, o in ours.items():
        g = base[doc_of[row]]
        o_cpu, g_cpu = o.cpu / o.pages * 1000, g.cpu / g.pages * 1000
        o_kb, g_kb = o.bytes / o.pages / 1024, g.bytes / g.pages / 1024
        o_fid, g_fid = o.fidelity[sigma], g.fidelity[sigma]
        o_rate, g_rate = o.pages / o.wall, g.pages / g.wall
        better += o_fid < g_fid
        fast_wall += o_rate >= g_rate
        fast_cpu += o_cpu <= g_cpu
        small += o_kb <= g_kb
        print(f"{row:<12} {o.pages:>5} | {o_rate:>7.1f} {o_cpu:>8.1f} {o_kb:>7.1f} "
              f"{o_fid:>8.2f} | {g_rate:>6.1f} {g_cpu:>6.1f} {g_kb:>7.1f} {g_fid:>6.2f} | "
              f"{o_rate / g_rate:>6.2f} {g_cpu / o_cpu:>5.2f} {o_kb / g_kb:>7.2f} "
              f"{'better' if o_fid < g_fid else 'WORSE':>6}")  # fmt: skip
    # The overall figures count every document once, as the product converts it.
    main_rows = [row for row in ours if row == doc_of[row]]
    pages = sum(ours[row].pages for row in main_rows)
    o_wall = sum(ours[row].wall for row in main_rows)
    g_wall = sum(base[row].wall for row in main_rows)
    o_cpu = sum(ours[row].cpu for row in main_rows)
    g_cpu = sum(base[row].cpu for row in main_rows)
    o_b = sum(ours[row].bytes for row in main_rows)
    g_b = sum(base[row].bytes for row in main_rows)
    print(f"{'ALL':<12} {pages:>5} | {pages / o_wall:>7.1f} {o_cpu / pages * 1000:>8.1f} "
          f"{o_b / pages / 1024:>7.1f}          | {pages / g_wall:>6.1f} "
          f"{g_cpu / pages * 1000:>6.1f} {g_b / pages / 1024:>7.1f}")  # fmt: skip
    print()
    print("fidelity at other blurs (Gaussian sigma, px; ours / Ghostscript; lower is better)")
    print(f"{'page type':<12} " + " ".join(f"{f'sigma {s:g}':>15}" for s in sigmas))
    for row, o in ours.items():
        if row != doc_of[row]:
            continue
        g = base[row]
        print(f"{row:<12} " + " ".join(f"{o.fidelity[s]:>7.2f} /{g.fidelity[s]:>6.2f}"
                                       for s in sigmas))  # fmt: skip
    print()

    def verdict(ok: bool) -> str:
        return "GOAL MET" if ok else "GOAL MISSED"

    n = len(ours)
    speed, wall_speed, size = g_cpu / o_cpu, g_wall / o_wall, o_b / g_b
    print(f"RATIO speed (Ghostscript CPU / ours, per page): {speed:.2f} (goal >= 1.0) "
          f"{verdict(speed >= 1.0)}; wall-clock {wall_speed:.2f}")  # fmt: skip
    print(f"SPEED per page type: pages/s (wall) at least Ghostscript's on {fast_wall} of {n}, "
          f"CPU per page at most Ghostscript's on {fast_cpu} of {n} "
          f"{verdict(fast_wall == n)}")  # fmt: skip
    print(f"RATIO bytes per page (ours / Ghostscript): {size:.2f} (goal <= 1.0) "
          f"{verdict(size <= 1.0)}; at most Ghostscript's on {small} of {n} page types")
    print(f"FIDELITY better than Ghostscript on {better} of {n} page types "
          f"{verdict(better == n)}")  # fmt: skip


if __name__ == "__main__":
    main()
