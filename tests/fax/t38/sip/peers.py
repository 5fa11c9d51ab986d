"""Test peers for the SIP user agent: SIPp as a child process, and a media handler with
real UDP ports that ignores what arrives."""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from connectors.sip_t38.demo import free_port
from fax.t38.sdp import LocalMedia, Negotiated
from fax.t38.sip.media import SdpMediaHandler
from fax.t38.sip.message import SipRequest, SipResponse
from fax.t38.sip.outcome import CallOutcome
from fax.t38.sip.transport import Target
from fax.t38.sip.ua import UserAgent

SCENARIOS = Path(__file__).parent / "scenarios"
SIPP_DEADLINE = 40.0


class PortHandler(SdpMediaHandler):
    """A media handler whose ports are real, bound UDP sockets (media is ignored)."""

    def __init__(self) -> None:
        self._socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for s in self._socks:
            s.bind(("127.0.0.1", 0))
        audio, image = (int(s.getsockname()[1]) for s in self._socks)
        super().__init__(LocalMedia("127.0.0.1", audio_port=audio, image_port=image))
        self.ended_calls = 0

    async def media_changed(self, negotiated: Negotiated) -> None:
        await super().media_changed(negotiated)

    async def ended(self, outcome: CallOutcome) -> None:
        await super().ended(outcome)
        self.ended_calls += 1
        for s in self._socks:
            s.close()


class AudioOnlyHandler(PortHandler):
    """Takes audio only: an offer of image alone gets 488."""

    def __init__(self) -> None:
        super().__init__()
        self.local = LocalMedia("127.0.0.1", audio_port=self.local.audio_port)


@dataclass
class Tap:
    """Every SIP message a UA sent, in order."""

    sent: list[tuple[SipRequest | SipResponse, Target]] = field(default_factory=list)

    def requests(self, method: str) -> list[SipRequest]:
        return [m for m, _ in self.sent if isinstance(m, SipRequest) and m.method == method]

    def responses(self, status: int) -> list[SipResponse]:
        return [m for m, _ in self.sent if isinstance(m, SipResponse) and m.status == status]


def tap(ua: UserAgent) -> Tap:
    """Record what ``ua`` sends from now on (wraps its transport's send)."""
    t = Tap()
    layer = ua.transports
    original = layer.send

    def send(message: SipRequest | SipResponse, target: Target) -> None:
        t.sent.append((message, target))
        original(message, target)

    layer.send = send  # type: ignore[method-assign]
    return t


class Sipp:
    """One SIPp run (``sipp``, Debian sip-tester) on a free loopback port, bounded in time."""

    def __init__(self, scenario: str, workdir: Path, *, transport: str = "u1",
                 keys: dict[str, str] | None = None,
                 fill: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> None:
        exe = shutil.which("sipp")
        if exe is None:
            raise RuntimeError("sipp is not installed: run `make test`, which installs it")
        self.exe = exe
        self.scenario = SCENARIOS / scenario
        if fill:
            # A template: SIPp parses some fields (a status line) before any keyword.
            text = self.scenario.read_text()
            for k, v in fill.items():
                text = text.replace(k, v)
            self.scenario = workdir / scenario
            self.scenario.write_text(text)
        self.workdir = workdir
        self.transport = transport
        self.keys = keys or {}
        self.extra = list(extra)
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.name = self.scenario.stem
        self.succeeded = False

    @property
    def uri(self) -> str:
        """The SIP URI our UA uses as its proxy when SIPp is the far end."""
        t = "tcp" if self.transport.startswith("t") else "udp"
        return f"sip:127.0.0.1:{self.port};transport={t}"

    def _args(self, remote: str | None, calls: int) -> list[str]:
        args = [
            self.exe, "-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.port),
            "-t", self.transport, "-m", str(calls), "-timeout", f"{int(SIPP_DEADLINE)}s",
            "-timeout_error", "-nostdin", "-nd", "-max_retrans", "5",
            "-trace_err", "-error_file", str(self.workdir / f"{self.name}.err"),
            "-trace_msg", "-message_file", str(self.workdir / f"{self.name}.msg"),
            "-trace_screen", "-screen_file", str(self.workdir / f"{self.name}.screen"),
            "-mp", str(free_port()),
        ]
        for k, v in self.keys.items():
            args += ["-key", k, v]
        args += self.extra
        if remote is not None:
            args += ["-s", self.keys.get("service", "4930123456"), remote]
        return args

    async def start(self, remote: str | None = None, calls: int = 1) -> None:
        """Start SIPp: as UAS when ``remote`` is None, else as UAC dialling ``remote``."""
        self.proc = await asyncio.create_subprocess_exec(
            *self._args(remote, calls), cwd=self.workdir,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        if self.transport.startswith("t") and remote is None:
            await self._wait_listening()
        else:
            await asyncio.sleep(0.2)  # UDP: our retransmissions cover a late start anyway

    async def _wait_listening(self) -> None:
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            w.close()
            await w.wait_closed()
            return
        raise TimeoutError("sipp did not listen")

    async def finish(self, timeout: float = SIPP_DEADLINE + 5) -> None:
        """Wait for SIPp to exit; fail with its logs unless every call succeeded."""
        assert self.proc is not None
        try:
            async with asyncio.timeout(timeout):
                _, stderr = await self.proc.communicate()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"sipp {self.name} did not finish\n{self.logs()}") from None
        if self.proc.returncode != 0:
            raise AssertionError(
                f"sipp {self.name} exited {self.proc.returncode}\n{stderr.decode()}\n{self.logs()}"
            )
        self.succeeded = True

    async def stop(self) -> None:
        """Kill SIPp if it still runs (printing its traces: pytest shows them on failure)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if not self.succeeded:
            print(self.logs())

    def logs(self) -> str:
        """The tail of SIPp's error and message traces."""
        out = []
        for suffix in ("err", "msg"):
            for path in self.workdir.glob(f"{self.name}*.{suffix}"):
                out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(out)
