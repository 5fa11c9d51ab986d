"""Smoke test of ``bench/webhooks.py``: a short SQLite run delivers every event once and
prints its figures and ratios (see ``bench/README.md``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_webhooks_bench_smoke() -> None:
    cmd = [sys.executable, "-m", "bench.webhooks", "--backends", "sqlite", "--rate", "200",
           "--seconds", "1", "--backlog", "500", "--drain", "60"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert re.search(
        r"^sqlite steady@200/s\s+\d+\s+\d+\s+[\d.]+\s+[\d,]+\s+[\d.]+\s+[\d.]+", out.stdout, re.M
    ), text
    for phase in ("steady@200/s", "backlog"):
        assert re.search(rf"^CHECK sqlite {phase}: (\d+)/\1 delivered, DUPLICATES 0, MISSING 0, "
                         r"bad signatures 0$", out.stdout, re.M), text  # fmt: skip
    assert re.search(r"^RATIO sqlite: throughput .* GOAL (MET|MISSED)$", out.stdout, re.M), text
