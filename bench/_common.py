"""Helpers shared by the benchmarks: child processes on free loopback ports, CPU pinning,
the uvicorn server class, the seeded sender, and py-spy sampling with a hot-spot summary."""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SENDER = "+4915112345671"
CREDIT_LIMIT_MICROS = 10**12


def uvicorn_choices() -> tuple[str, str]:
    """The event loop and HTTP implementation every server of a run uses."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def server_class() -> Any:
    """uvicorn.Server without its signal capture: the gateway's own (``gateway.serving``)."""
    from gateway.serving import Server

    return Server


async def seed_sender(rt: Any) -> dict[str, Any]:
    """A business team (huge credit limit), one SMS member owning ``SENDER`` and a member
    API key; returns what the client needs (``key``, ``team_id``, ``member_id``)."""
    from gateway.auth import create_key
    from gateway.ids import new_id
    from gateway.models import Addon, Member, Plan, Team
    from gateway.numbers import normalize_mobile

    now = rt.clock.now()
    team = Team(new_id("team"), "Bench GmbH", Plan.BUSINESS.value, CREDIT_LIMIT_MICROS, "DE", now)
    await rt.store.create_team(team)
    member = Member(
        new_id("mem"),
        team.id,
        "Bench Sender",
        "bench@example.com",
        normalize_mobile(SENDER, "DE"),
        None,
        frozenset({Addon.SMS.value}),
        True,
        now,
    )
    await rt.store.create_member(member, Plan.BUSINESS.max_members)
    _, secret = await create_key(rt.store, rt.clock, team.id, member.id)
    return {"key": secret, "team_id": team.id, "member_id": member.id}


def pin(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child to ``cpu`` (None: no pinning)."""
    if cpu is None:
        return None

    def run() -> None:
        os.sched_setaffinity(0, {cpu})

    return run


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until 127.0.0.1:port accepts connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM our own child, then SIGKILL it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def find_py_spy() -> str | None:
    """py-spy on PATH or next to this interpreter (``.venv/bin``)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def start_py_spy(
    exe: str, pid: int, seconds: int, out: Path, cpu: int | None
) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``seconds`` (all samples, idle too) into collapsed stacks."""
    cmd = [
        exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200",
        "--idle", "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin(cpu)
    )


_OWN_FRAME = re.compile(r"\((gateway|connectors|webhooks|fax)/")


def hot_spots(path: Path, top: int = 20) -> str:
    """The hottest lines of the project's code: each sample is charged to the innermost
    frame of the project's own code (library time below it included), plus the
    inclusive share of the project's functions."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f for f in stack.split(";") if f]
        mine = [f for f in frames if _OWN_FRAME.search(f)]
        own[mine[-1] if mine else "(outside the project: server, framework, event loop)"] += n
        for fn in {re.sub(r":\d+\)$", ")", f) for f in mine}:
            inclusive[fn] += n
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; innermost project frame (file:line):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive, by project function:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(lines)
