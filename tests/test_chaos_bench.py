"""The chaos bench in small (``bench/chaos.py``): 300 sends through two API processes and
two workers on one Redis, while an API process, a worker and Redis itself are each
SIGKILLed once and restarted. Every accepted message reaches the SMSC, every 202 names a
stored message, a message reaches the SMSC twice only when its send job was held at a kill,
nothing is charged twice, and every 5xx is a problem document.

With ``REDIS_URL`` set the bench runs on that server and does not kill it (not ours)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_chaos_bench_small(tmp_path: Path) -> None:
    cmd = [
        sys.executable, str(REPO / "bench" / "chaos.py"), "--sends", "300", "--connections",
        "8", "--rate", "60", "--kills", "api=1,worker=1,redis=1", "--visibility", "5",
        "--redis-down", "2", "--drain", "120", "--max-seconds", "240",
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=480, check=False, env=env
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert re.search(r"^SENDS 300: 300 accepted \(202\), 0 given up, 0 refused;", text, re.M), text
    assert re.search(r"^LOST 0 of 300 accepted messages .* -> OK$", text, re.M), text
    assert re.search(r"^NOT STORED 0 202 answers .* -> OK$", text, re.M), text
    assert re.search(
        r"^DUPLICATES (\d+) messages .* \(\1 attributed to kills, 0 not\) -> OK$", text, re.M
    ), text
    assert re.search(
        r"^DOUBLE CHARGES 0 sends .*; ledger (\d+) units used, charged messages \1 units -> OK$",
        text,
        re.M,
    ), text
    assert re.search(r"^5XX WITHOUT problem\+json 0 -> OK$", text, re.M), text
    kills = re.findall(r"^  \d+\s+(api|worker|redis)\s", text, re.M)
    expected = ["api", "worker"] if os.environ.get("REDIS_URL") else ["api", "redis", "worker"]
    assert sorted(kills) == expected, text
    assert re.search(r"^CPU gateway processes [\d.]+ s = [\d,]+ us/message", text, re.M), text
    assert re.search(r"^THROUGHPUT accepted [\d,]+/s", text, re.M), text
    assert text.rstrip().endswith("INVARIANTS OK"), text
    assert not list(tmp_path.glob("gw-bench-chaos-*")), "the bench left its work directory"
