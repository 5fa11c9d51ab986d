"""``gateway demo``'s first minutes: a busy port refused before anything is set up, the
banner in one piece ending with how to stop, read-back commands, and a ``gateway admin``
command that works as printed; ``gateway admin`` creates a store only for ``team create``."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.demo import run_demo
from gateway.errors import ConfigError
from gateway.runtime import Runtime
from tests.conftest import free_port

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).parents[2]


async def test_a_busy_port_is_refused_before_any_banner(
    capsys: pytest.CaptureFixture[str],
) -> None:
    served: list[int] = []

    async def serve(rt: Runtime, host: str, port: int) -> None:
        served.append(port)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError) as err:
            await run_demo("127.0.0.1", port, serve)
    assert 'DEMO_ARGS="--port' in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
    assert capsys.readouterr().out == ""  # no banner, no key
    assert served == []


@pytest.mark.slow
async def test_the_banner_and_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """One block ending with 'Stop with Ctrl-C.'; the admin command runs as printed."""
    shown: dict[str, subprocess.CompletedProcess[str]] = {}

    async def serve(rt: Runtime, host: str, port: int) -> None:
        out = capsys.readouterr().out
        shown["banner"] = subprocess.CompletedProcess([], 0, out, "")
        admin = next(line for line in out.splitlines() if " admin --config " in line)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        shown["admin"] = await asyncio.to_thread(
            subprocess.run, ["bash", "-c", admin.strip()], capture_output=True, text=True,
            env=env, timeout=60, cwd="/",
        )  # fmt: skip

    await run_demo("127.0.0.1", free_port(), serve)
    out = shown["banner"].stdout
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0] == "Messaging gateway demo"
    assert lines[-1].strip() == "Stop with Ctrl-C."
    assert out.count("Stop with Ctrl-C.") == 1
    assert "/v1/conversations -H" in out and "/v1/messages -H" in out
    assert "apt-get install -y curl" in out
    admin = shown["admin"]
    assert admin.returncode == 0, admin.stderr
    assert "Demo GmbH" in admin.stdout and "Anna Schmidt" in admin.stdout


@pytest.mark.slow
def test_admin_creates_a_store_only_for_team_create(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "gateway.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_STORE"] = f"sqlite:///{missing}"
    for argv in (["team", "show", "team_x"], ["member", "list", "--team", "team_x"],
                 ["jobs", "list"], ["key", "create", "--team", "team_x"]):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "admin", *argv],
            env=env, capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        assert f"{missing} does not exist" in proc.stderr and "nothing was created" in proc.stderr
    assert not missing.parent.exists()
