"""Documents -> fax pages: speed, bytes per page and fidelity, beside Ghostscript.

    python -m bench.fax_render [--rounds 3] [--blur 2.0] [--no-install] [--keep DIR]

The corpus is generated on the spot (``bench/fax_corpus.py``): a text page, a grey form
with 7 pt text, a photo page, an A4 landscape page, a US Letter page and a 30-page
document. Each round converts every document with the product (``fax.render``, through
its sandbox: a forked child per document, as in production) and with Ghostscript
(``gs -sDEVICE=tiffg4 -r204x196``, one process per document), alternating the two.

* **pages/s**: pages over wall time (the machine is shared: noisy).
* **CPU ms/page**: the converting processes' user + system time per page (the product:
  the sandbox child's, reported by the zygote, plus this process's own; Ghostscript: its
  process's). This holds up on a busy machine, so the speed ratio uses it.
* **KB/page**: the TIFF's bytes per page: a fax page's line time follows its size.
* **fidelity**: the mean absolute difference (0-255 grey levels, lower is better)
  between the fax page and the same renderer's greyscale page at the same resolution,
  both blurred with a Gaussian of ``--blur`` pixels (about what the eye averages at
  reading distance). The product's greyscale page is PDFium's in the fax geometry;
  Ghostscript's is its own ``pnggray`` at 204x196 (text and graphics anti-aliased),
  padded like its fax page. Each pipeline is thus judged by what its binarization loses.

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
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
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
    wall: float = 0.0
    cpu: float = 0.0
    bytes: int = 0
    runs: int = 0
    fidelity: list[float] = field(default_factory=list)


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


def run_ours(box: Sandbox, pdf: bytes) -> tuple[bytes, int, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fax = render.render_document(pdf, "application/pdf", sandbox=box)
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
        pages = tif.n_frames
    return data, pages, wall, cpu


def fax_pages(data: bytes) -> list[np.ndarray]:
    out = []
    with Image.open(io.BytesIO(data)) as tif:
        for n in range(tif.n_frames):
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
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blur", type=float, default=2.0, help="Gaussian sigma, pixels")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--keep", type=Path, help="write every fax TIFF into this directory")
    args = ap.parse_args()
    gs = ensure_gs(not args.no_install)
    gs_version = subprocess.run([gs, "--version"], capture_output=True, text=True).stdout.strip()
    docs = corpus()
    print(f"python {sys.version.split()[0]}, ghostscript {gs_version}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}, {args.rounds} rounds, blur sigma {args.blur} px")
    ours = {name: Tally() for name in docs}
    base = {name: Tally() for name in docs}
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
                    order = ("ours", "gs") if rnd % 2 == 0 else ("gs", "ours")
                    for who in order:
                        if who == "ours":
                            data, pages, wall, cpu = run_ours(box, pdf)
                            tally = ours[name]
                        else:
                            data, pages, wall, cpu = run_gs(gs, paths[name], tmp / "gs.tif")
                            tally = base[name]
                        tally.pages += pages
                        tally.wall += wall
                        tally.cpu += cpu
                        tally.bytes += len(data)
                        tally.runs += 1
                        last.setdefault(name, (b"", b""))
                        mine, theirs = last[name]
                        last[name] = (data, theirs) if who == "ours" else (mine, data)
            for name, pdf in docs.items():
                mine, theirs = last[name]
                ours[name].fidelity.append(fidelity(fax_pages(mine), our_grey(pdf), args.blur))
                base[name].fidelity.append(
                    fidelity(fax_pages(theirs), gs_grey(gs, paths[name], tmp), args.blur))
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"{name}-ours.tif").write_bytes(mine)
                    (args.keep / f"{name}-gs.tif").write_bytes(theirs)
    finally:
        box.close()
    report(ours, base)


def report(ours: dict[str, Tally], base: dict[str, Tally]) -> None:
    head = (f"{'page type':<11} {'pages':>5} | {'pages/s':>8} {'cpu ms/p':>8} {'KB/page':>8} "
            f"{'fidelity':>8} | {'gs p/s':>7} {'gs cpu':>7} {'gs KB/p':>8} {'gs fid':>7} | "
            f"{'cpu x':>6} {'bytes x':>7} {'fid':>6}")  # fmt: skip
    print(head)
    print("-" * len(head))
    better = 0
    for name in ours:
        o, g = ours[name], base[name]
        per = o.pages // max(1, o.runs)
        o_cpu, g_cpu = o.cpu / o.pages * 1000, g.cpu / g.pages * 1000
        o_kb, g_kb = o.bytes / o.pages / 1024, g.bytes / g.pages / 1024
        o_fid, g_fid = float(np.mean(o.fidelity)), float(np.mean(g.fidelity))
        better += o_fid < g_fid
        print(f"{name:<11} {per:>5} | {o.pages / o.wall:>8.1f} {o_cpu:>8.1f} {o_kb:>8.1f} "
              f"{o_fid:>8.2f} | {g.pages / g.wall:>7.1f} {g_cpu:>7.1f} {g_kb:>8.1f} "
              f"{g_fid:>7.2f} | {g_cpu / o_cpu:>6.2f} {o_kb / g_kb:>7.2f} "
              f"{'better' if o_fid < g_fid else 'WORSE':>6}")  # fmt: skip
    pages = sum(t.pages for t in ours.values())
    o_wall, g_wall = sum(t.wall for t in ours.values()), sum(t.wall for t in base.values())
    o_cpu, g_cpu = sum(t.cpu for t in ours.values()), sum(t.cpu for t in base.values())
    o_b, g_b = sum(t.bytes for t in ours.values()), sum(t.bytes for t in base.values())
    print(f"ALL         {pages:>5} | {pages / o_wall:>8.1f} {o_cpu / pages * 1000:>8.1f} "
          f"{o_b / pages / 1024:>8.1f}          | {pages / g_wall:>7.1f} "
          f"{g_cpu / pages * 1000:>7.1f} {g_b / pages / 1024:>8.1f}")  # fmt: skip

    def verdict(ok: bool) -> str:
        return "GOAL MET" if ok else "GOAL MISSED"

    speed, wall_speed, size = g_cpu / o_cpu, o_wall and g_wall / o_wall, o_b / g_b
    print(f"RATIO speed (Ghostscript CPU / ours, per page): {speed:.2f} (goal >= 1.0) "
          f"{verdict(speed >= 1.0)}; wall-clock {wall_speed:.2f}")  # fmt: skip
    print(f"RATIO bytes per page (ours / Ghostscript): {size:.2f} (goal <= 1.0) "
          f"{verdict(size <= 1.0)}")  # fmt: skip
    print(f"FIDELITY better than Ghostscript on {better} of {len(ours)} page types "
          f"{verdict(better == len(ours))}")  # fmt: skip


if __name__ == "__main__":
    main()
