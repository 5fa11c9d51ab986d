"""The atheris harnesses, run briefly and deterministically (fixed seed, fixed number of
inputs): each must get through without a crash. Hunting runs are longer (see each
harness's docstring, e.g. ``-max_total_time=600``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DICT = Path(__file__).parent / "webhooks_in.dict"
HARNESSES = {
    "tests.fuzz.fuzz_smpp": [],
    "tests.fuzz.fuzz_http_response": [],
    "tests.fuzz.fuzz_webhooks_in": [f"-dict={DICT}"],
}
RUNS = 20_000


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(HARNESSES))
def test_harness_runs_clean(module: str, tmp_path: Path) -> None:
    args = [f"-runs={RUNS}", "-seed=1", "-timeout=10", "-rss_limit_mb=2048"]
    args += [f"-artifact_prefix={tmp_path}/", *HARNESSES[module]]
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Done {RUNS} runs" in done.stderr
    assert not list(tmp_path.iterdir())  # no crash or timeout artifact
