"""Run an independent SMSC (``node`` on the npm ``smpp`` package, or ``smpp34`` on the PyPI
package's Server) as a child process on a free loopback port, talk to it over its JSON-lines
control protocol, and keep every event it recorded across restarts."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from tests.conftest import free_port

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"
REPO = HERE.parents[2]
KINDS = ("node", "smpp34")
Event = dict[str, Any]


def node_command() -> list[str]:
    """``node smsc.js``; explains how to install it when something is missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: run `make test`, which installs nodejs/npm")
    if not (NODE_DIR / "node_modules" / "smpp" / "package.json").exists():
        raise RuntimeError(
            f"the npm package smpp is not installed in {NODE_DIR}: run `make test` "
            f"(it runs `npm ci` there)"
        )
    return [node, str(NODE_DIR / "smsc.js")]


class SmscPeer:
    """One independent SMSC process (restartable on the same port and journal)."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        *,
        system_id: str = "gateway",
        password: str = "secret",
        receipt_delay_ms: int = 100,
        options: tuple[str, ...] = (),
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown SMSC kind {kind!r} (known: {', '.join(KINDS)})")
        self.kind = kind
        self.system_id = system_id
        self.password = password
        self.port = free_port()
        self.journal = workdir / f"smsc-{kind}-{self.port}.journal"
        self.stderr_path = workdir / f"smsc-{kind}-{self.port}.stderr"
        self.options = (
            "--host", "127.0.0.1", "--port", str(self.port), "--system-id", system_id,
            "--password", password, "--journal", str(self.journal),
            "--receipt-delay-ms", str(receipt_delay_ms), *options,
        )  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.records: list[Event] = []
        self.incarnations = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._reader: threading.Thread | None = None

    # -- process ----------------------------------------------------------------------
    def command(self) -> list[str]:
        """The argv that starts this SMSC."""
        if self.kind == "node":
            return [*node_command(), *self.options]
        return [sys.executable, "-m", "tests.connectors.smpp_peers.smpp34_smsc", *self.options]

    def start(self, timeout: float = 20.0) -> None:
        """Start the process and wait until it listens (bounded)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                raise RuntimeError(f"{self.kind} SMSC already running")
            self._reap()  # the previous incarnation died (killed or crashed)
        self.incarnations += 1
        incarnation = self.incarnations
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        proc = self.proc
        self._reader = threading.Thread(
            target=self._read, args=(proc, incarnation), name=f"smsc-{self.kind}", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not any(
            r["event"] == "listening" and r["incarnation"] == incarnation for r in self.snapshot()
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.kind} SMSC did not start (exit {proc.returncode}):\n{self.stderr()}"
                )
            time.sleep(0.01)

    def _read(self, proc: subprocess.Popen[bytes], incarnation: int) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                event = {"event": "garbage", "line": raw.decode(errors="replace")}
            event["incarnation"] = incarnation
            with self._lock:
                self.records.append(event)

    def stderr(self) -> str:
        """What the SMSC printed on stderr so far (for failure messages)."""
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether the current process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the SMSC (nothing is flushed or answered)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def restart(self) -> None:
        """Kill it if it still runs, then start it again on the same port and journal."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Close its stdin (it exits), SIGKILL it if it does not within 5 s."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._reap()

    def _reap(self) -> None:
        proc = self.proc
        if proc is None:
            return
        proc.wait(10)
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self._reader is not None:
            self._reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    # -- records ----------------------------------------------------------------------
    def snapshot(self) -> list[Event]:
        """Every event so far (every incarnation)."""
        with self._lock:
            return list(self.records)

    def events(self, name: str, **match: Any) -> list[Event]:
        """Events called ``name`` whose fields equal ``match``."""
        return [
            e
            for e in self.snapshot()
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]

    def accepted(self) -> list[Event]:
        """Every submit_sm the SMSC accepted (answered with a message id)."""
        return [e for e in self.events("submit_sm") if e["status"] == 0]

    async def wait_accepted(self, count: int, timeout: float = 15.0) -> list[Event]:
        """Wait until the SMSC recorded ``count`` accepted submit_sm; returns them all."""
        await self.wait_for(lambda _: len(self.accepted()) >= count, f"{count} accepted submit_sm",
                            timeout)  # fmt: skip
        return self.accepted()

    async def wait_for(
        self, check: Callable[[list[Event]], bool], what: str, timeout: float = 15.0
    ) -> list[Event]:
        """Poll the records until ``check`` holds; fail with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.snapshot()
            if check(records):
                return records
            if time.monotonic() > deadline:
                tail = "\n".join(json.dumps(r) for r in records[-15:])
                raise AssertionError(
                    f"{self.kind} SMSC: timed out after {timeout} s waiting for {what}; "
                    f"last events:\n{tail}\nstderr:\n{self.stderr()}"
                )
            await anyio.sleep(0.02)

    # -- control ----------------------------------------------------------------------
    def send(self, cmd: dict[str, Any]) -> str:
        """Write one control line; returns its id."""
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.kind} SMSC is not running")
        ident = f"c{next(self._ids)}"
        self.proc.stdin.write((json.dumps({**cmd, "id": ident}) + "\n").encode())
        self.proc.stdin.flush()
        return ident

    async def control(self, cmd: str, **fields: Any) -> None:
        """Send a command and wait until the SMSC acknowledged it."""
        ident = self.send({"cmd": cmd, **fields})
        await self.wait_for(
            lambda rs: any(r["event"] == "pong" and r.get("id") == ident for r in rs),
            f"the answer to {cmd}",
        )

    async def deliver(self, **fields: Any) -> Event:
        """Inject one deliver_sm (fields as in the control protocol; ``short_message`` as
        bytes or hex) and wait for the ESME's deliver_sm_resp."""
        sm = fields.get("short_message", b"")
        if isinstance(sm, bytes | bytearray):
            fields["short_message"] = bytes(sm).hex()
        ident = self.send({"cmd": "deliver", **fields})
        records = await self.wait_for(
            lambda rs: any(r["event"] == "deliver" and r.get("id") == ident for r in rs),
            "the deliver_sm_resp of an injected message",
        )
        event = next(r for r in records if r["event"] == "deliver" and r.get("id") == ident)
        if "error" in event:
            raise AssertionError(f"{self.kind} SMSC could not deliver: {event['error']}")
        return event
