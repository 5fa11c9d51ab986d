"""Smoke test of the ingest benchmark: it runs end to end, prints a ratio, and the store
holds exactly the messages the client was answered 202 for (see ``bench/README.md``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_ingest_bench_smoke() -> None:
    """One short SQLite round (a baseline server and a gateway server, 1 s each)."""
    cmd = [sys.executable, str(REPO / "bench" / "ingest.py"), "--duration", "1",
           "--connections", "4", "--backends", "sqlite", "--no-install"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert re.search(r"^sqlite\s+\d+\s+[\d.]+\s+[\d,]+\s+.*\s\d+\.\d\d$", out.stdout, re.M), text
    assert re.search(r"^RATIO sqlite: \d+\.\d+ .*GOAL (MET|MISSED)$", out.stdout, re.M), text
    assert re.search(r"^ACCEPTED sqlite: stored [1-9]\d* messages.* -> MATCH$", out.stdout, re.M), (
        text
    )


@pytest.mark.slow
def test_sms_bench_smoke() -> None:
    """Two seconds of end-to-end load (gateway, SMSC simulator, client): every accepted
    message reaches ``delivered`` and the figures are printed."""
    cmd = [sys.executable, str(REPO / "bench" / "sms.py"), "--seconds", "2", "--connections",
           "4", "--drain", "60"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    row = r"\s+[1-9]\d*\s+[\d,]+\s+[\d,.]+\s+[\d,.]+$"
    assert re.search(r"^POST -> 202 \(accepted\)" + row, out.stdout, re.M), text
    assert re.search(r"^POST -> delivered" + row, out.stdout, re.M), text
    assert re.search(
        r"^RATIO delivered/s vs goal: \d+\.\d+ .*GOAL (MET|MISSED)$", out.stdout, re.M
    ), text
    assert re.search(r"^DELIVERED (\d+) of \1 accepted messages -> ALL$", out.stdout, re.M), text
    assert re.search(r"^  gateway\s+[\d.]+ s CPU .* us/message$", out.stdout, re.M), text


@pytest.mark.slow
def test_whatsapp_inbound_bench_smoke(tmp_path: Path) -> None:
    """A second of each run (baseline, max, paced) against the real gateway with its
    whatsapp_cloud connector: every 200 is one stored inbound message.

    PATH holds only the virtualenv: the bench may call no system command that a minimal
    Debian lacks (it once ran ``uptime``), and it leaves no work directory behind."""
    cmd = [sys.executable, str(REPO / "bench" / "whatsapp_inbound.py"), "--seconds", "1",
           "--warmup", "0.5", "--connections", "4", "--rate", "200",
           "--paced-connections", "8"]  # fmt: skip
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False, env=env
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert not list(tmp_path.glob("gw-bench-wa-*")), "the bench left its work directory"
    row = r"\s+[1-9]\d*\s+[\d,]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\s+0\s+[\d,]+$"
    for name in ("baseline max", "max 4 conn", "paced 200/s"):
        assert re.search(rf"^{name}{row}", out.stdout, re.M), text
    assert re.search(r"^GOAL >= 1,000 webhooks/s .*: GOAL (MET|MISSED)$", out.stdout, re.M), text
    assert re.search(r"^CPU per webhook .*: [\d,]+ us -> ", out.stdout, re.M), text
    assert re.search(
        r"^STORED (\d+) inbound messages for \1 x 200 .*, (\d+) conversations, \2 with an "
        r"open window -> MATCH$",
        out.stdout,
        re.M,
    ), text


@pytest.mark.slow
def test_ingest_cpu_bench_smoke() -> None:
    """A few hundred requests per kind and layer: every answer 202, a figure per line."""
    cmd = [sys.executable, str(REPO / "bench" / "ingest_cpu.py"), "--kinds", "baseline,sqlite",
           "--requests", "300", "--runs", "2"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for kind in ("baseline", "sqlite"):
        for layer in ("http", "app"):
            assert re.search(
                rf"^{kind}\s+{layer}\s+\d+\.\d\s+\d+\.\d\s+\d+ \d+$", out.stdout, re.M
            ), text
    assert re.search(r"^predicted ratio sqlite: \d\.\d{3} ", out.stdout, re.M), text


@pytest.mark.slow
def test_metrics_histogram_bench_smoke() -> None:
    """Small sizes: both figures, their ratio and the share of a send's CPU are printed."""
    cmd = [sys.executable, "-m", "bench.metrics_histogram", "--observations", "5000",
           "--rounds", "2", "--sends", "200"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for name in ("own buckets", "prometheus_client"):
        assert re.search(rf"^{name}\s+\d+ ns cpu/observation$", out.stdout, re.M), text
    assert re.search(r"^ratio prometheus_client/own buckets: \d+\.\d\d$", out.stdout, re.M), text
    assert re.search(r"-?\d+\.\d\d % of a send's CPU$", out.stdout, re.M), text


@pytest.mark.slow
def test_fax_render_bench_smoke() -> None:
    """One round over the generated corpus: a row per page type beside Ghostscript (the
    long document also with one and two threads), the fidelity at three blurs, and the
    goal lines."""
    cmd = [sys.executable, "-m", "bench.fax_render", "--rounds", "1", "--no-install"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    num = r"\s+[\d.]+"
    for name, pages in (("text", 1), ("grey_form", 1), ("photo", 1), ("landscape", 1),
                        ("letter", 1), ("30_pages", 30), ("30_pages/1t", 30),
                        ("30_pages/2t", 30)):  # fmt: skip
        row = rf"^{name}\s+{pages} \|{num * 4} \|{num * 4} \|{num * 3}\s+(better|WORSE)$"
        assert re.search(row, out.stdout, re.M), text
    assert re.search(r"^grey_form(\s+[\d.]+ /\s+[\d.]+){3}$", out.stdout, re.M), text
    assert re.search(r"^RATIO speed .*: \d+\.\d\d \(goal >= 1\.0\) GOAL (MET|MISSED)", out.stdout,
                     re.M), text  # fmt: skip
    assert re.search(r"^SPEED per page type: .* on \d of 8, .* on \d of 8 GOAL", out.stdout,
                     re.M), text  # fmt: skip
    assert re.search(r"^RATIO bytes per page .*GOAL (MET|MISSED); .* on \d of 8 page types$",
                     out.stdout, re.M), text  # fmt: skip
    assert re.search(r"^FIDELITY better than Ghostscript on \d of 8 page types GOAL", out.stdout,
                     re.M), text  # fmt: skip


@pytest.mark.slow
def test_portal_bench_smoke() -> None:
    """A small run of both measurements (the inbox page on SQLite and on Redis): the ratios
    and CPU figures are printed and every stream got every event."""
    cmd = [sys.executable, str(REPO / "bench" / "portal.py"), "--conversations", "300",
           "--requests", "10", "--streams", "20", "--events", "3", "--gap", "0.05"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    for store in ("sqlite", "redis"):  # part 1 on both backends
        assert re.search(rf"^RATIO inbox page {store}: \d+\.\d\d .*GOAL (MET|MISSED)$",
                         out.stdout, re.M), text  # fmt: skip
    assert re.search(r"^  server .* CPU [\d.]+ ms/request", out.stdout, re.M), text
    assert re.search(r"^RATIO event p99: \d+\.\d\d .*GOAL (MET|MISSED)$", out.stdout, re.M), text
    for name in ("portal", "bare"):
        assert re.search(rf"^  {name}\s+streams 20 .* missing 0  server CPU [\d.]+ ms/event$",
                         out.stdout, re.M), text  # fmt: skip


@pytest.mark.slow
def test_t38_bench_smoke() -> None:
    """Two one-page fax calls in real time from a sip_t38 connector to a simulator
    process: both end OK and the table and the ratio are printed."""
    cmd = [sys.executable, str(REPO / "bench" / "t38.py"), "--calls", "2", "--pages", "1",
           "--ramp", "0.5"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert re.search(r"^\s+2\s+2\s+[\d.]+\s+[1-9]\d*\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+", out.stdout,
                     re.M), text
    assert re.search(r"^RATIO calls per core .* -> GOAL (MET|MISSED)$", out.stdout, re.M), text


@pytest.mark.slow
def test_scale_bench_smoke() -> None:
    """Small runs of the three parts (1 and 2 worker processes plus an API-only process on
    one Redis; two store sizes on both backends; one process's CPU per message, Redis vs
    SQLite): figures and ratios are printed, and every run passes its checks (0 lost,
    0 duplicated, binds within the limit)."""
    cmd = [sys.executable, str(REPO / "bench" / "scale.py"), "--messages", "150",
           "--workers", "1,2", "--binds", "2", "--sizes", "200,800",
           "--concurrency", "16", "--rounds", "1", "--part", "processes,growth,cpu"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    row = r"\s+150\s+[\d,]+\s+\d+\.\d\d   lost 0 dup 0 binds \d/\d -> OK(   \(round 1\))?$"
    labels = ("1 worker \\+ 1 API", "2 worker \\+ 1 API", "sqlite, 200 in store",
              "sqlite, 800 in store", "redis, 200 in store", "redis, 800 in store")  # fmt: skip
    for label in labels:
        assert re.search(rf"^{label}{row}", out.stdout, re.M), text
    assert re.search(r"^  Redis commands per message: \d+\.\d\d \(.*evalsha \d+\.\d\d", out.stdout,
                     re.M), text
    assert re.search(r"^MEDIAN 2 worker \+ 1 API: \d+\.\d\d CPU-s .*; RATIO vs 1 worker: \d+\.\d\d "
                     r"\(flat: <= 1\.10\) -> (FLAT|NOT FLAT)$", out.stdout, re.M), text
    for store in ("sqlite", "redis"):
        assert re.search(rf"^RATIO {store} CPU per message, 800 vs 200 in store: "
                         r"\d+\.\d\d .*GOAL (MET|MISSED)$", out.stdout, re.M), text  # fmt: skip
    assert re.search(r"^RATIO one process CPU per message, redis vs sqlite: \d+\.\d\d "
                     r"\(goal <= 1\.00\) -> GOAL (MET|MISSED)$", out.stdout, re.M), text
    assert "CHECKS 6 of 6 runs" in out.stdout and "ALL OK" in out.stdout, text
