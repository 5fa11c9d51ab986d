"""rtpengine as an independent UDPTL stack and T.38 <-> G.711 gateway.

rtpengine (Debian ``rtpengine-daemon`` 10.5, userspace only: ``--table=-1``) sits between a
T.38 session and an audio (G.711) session; its own spandsp T.38 gateway demodulates and
remodulates, and its own UDPTL code talks to ours. What it needs (found by trying 10.5):

- started as ``rtpengine --foreground --table=-1 --interface=127.0.0.1
  --listen-ng=127.0.0.1:PORT --config-file=none --port-min=N --port-max=M``
  (``--config-file=none`` keeps it off /etc/rtpengine/rtpengine.conf);
- an ``offer`` with the T.38 side's SDP (``m=image … udptl t38`` and its T38 attributes)
  and the flag ``"T.38": ["decode"]``: it answers with ``m=audio PORT RTP/AVP 0 8``
  for the audio side (a warning "List of codecs empty" in its log is harmless);
- an ``answer`` with the audio side's SDP (one G.711 codec): it answers with
  ``m=image PORT udptl t38`` carrying its own T38FaxMaxBuffer (1800) and
  T38FaxMaxDatagram (512), which our T.38 session honours;
- media flows once both sides send (it learns the peers' addresses from the SDP);
- ``delete`` ends the call.

In both directions the sending session is the calling T.30 party, as in a real call (the
session's default: ``calling = job.sending``).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fax.t38.endpoint import MediaEndpoint
from fax.t38.params import AudioParams, FaxJob, T38Params
from fax.t38.session import AudioFaxSession, T38Session
from tests.fax.t38.support import assert_same_pages, free_udp_ports, make_tiff, ng_command

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class RtpEngine:
    """A throwaway rtpengine on loopback, controlled over the ng protocol."""

    def __init__(self, ng_port: int, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.ng_port = ng_port
        self.log = log
        self.proc = proc

    def command(self, message: dict[str, object]) -> dict[str, object]:
        answer = ng_command(self.ng_port, message)
        assert answer.get("result") == b"ok", (answer, self.log.read_text()[-2000:])
        return answer


@pytest.fixture(scope="module")
def rtpengine() -> Iterator[RtpEngine]:
    exe = shutil.which("rtpengine")
    assert exe is not None, "rtpengine is not installed (Debian package rtpengine-daemon)"
    workdir = Path(tempfile.mkdtemp(prefix="gw-rtpengine-"))
    log = workdir / "rtpengine.log"
    ng_port = free_udp_ports(1)[0]
    low = random.randrange(30000, 39000, 2)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                exe, "--foreground", "--table=-1", "--interface=127.0.0.1",
                f"--listen-ng=127.0.0.1:{ng_port}", "--config-file=none", "--log-stderr",
                "--log-level=6", f"--port-min={low}", f"--port-max={low + 400}",
                f"--pidfile={workdir / 'pid'}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    engine = RtpEngine(ng_port, log, proc)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if ng_command(ng_port, {"command": "ping"}, timeout=0.2).get("result") == b"pong":
                    break
            except TimeoutError:
                pass
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "rtpengine did not answer ping"
        yield engine
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def t38_sdp(port: int) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=image {port} udptl t38\r\n"
        "a=T38FaxVersion:0\r\na=T38MaxBitRate:14400\r\n"
        "a=T38FaxRateManagement:transferredTCF\r\na=T38FaxMaxBuffer:2000\r\n"
        "a=T38FaxMaxDatagram:400\r\na=T38FaxUdpEC:t38UDPRedundancy\r\n"
    )


def audio_sdp(port: int) -> str:
    return (
        "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\n"
    )


def attribute(sdp: str, name: str) -> int:
    found = re.search(rf"^a={name}:(\d+)", sdp, re.M)
    assert found, f"{name} missing in {sdp!r}"
    return int(found.group(1))


@pytest.mark.parametrize("t38_sends", [True, False], ids=["t38-to-audio", "audio-to-t38"])
async def test_fax_through_rtpengine_gateway(
    tmp_path: Path, rtpengine: RtpEngine, t38_sends: bool
) -> None:
    t38_ep = await MediaEndpoint.bind()
    audio_ep = await MediaEndpoint.bind()
    call_id = f"fax-{os.getpid()}-{t38_sends}-{time.monotonic_ns()}"
    offer = rtpengine.command(
        {
            "command": "offer", "call-id": call_id, "from-tag": "t38side",
            "sdp": t38_sdp(t38_ep.port), "T.38": ["decode"],
        }
    )
    offered = bytes(offer["sdp"]).decode()  # type: ignore[arg-type]
    audio_line = re.search(r"^m=audio (\d+) RTP/AVP ([\d ]+)", offered, re.M)
    assert audio_line, offered
    assert {"0", "8"} <= set(audio_line.group(2).split())
    assert "m=image" not in offered

    answer = rtpengine.command(
        {
            "command": "answer", "call-id": call_id, "from-tag": "t38side",
            "to-tag": "audioside", "sdp": audio_sdp(audio_ep.port),
        }
    )
    answered = bytes(answer["sdp"]).decode()  # type: ignore[arg-type]
    image_line = re.search(r"^m=image (\d+) udptl t38", answered, re.M)
    assert image_line, answered
    t38_params = T38Params(
        max_buffer=attribute(answered, "T38FaxMaxBuffer"),
        max_datagram=attribute(answered, "T38FaxMaxDatagram"),
        max_bit_rate=attribute(answered, "T38MaxBitRate"),
    )

    sent = make_tiff(tmp_path / "sent.tiff", 2)
    received = tmp_path / "received.tiff"
    send_job = FaxJob(send_file=sent, ident="+49 30 1111")
    receive_job = FaxJob(receive_file=received, ident="+49 40 2222")
    t38 = T38Session(
        t38_ep, ("127.0.0.1", int(image_line.group(1))),
        send_job if t38_sends else receive_job, t38_params,
    )
    audio = AudioFaxSession(
        audio_ep, ("127.0.0.1", int(audio_line.group(1))),
        receive_job if t38_sends else send_job, AudioParams("PCMA", 8),
    )
    try:
        t38.start()
        audio.start()
        got_t38, got_audio = await asyncio.wait_for(asyncio.gather(t38.wait(), audio.wait()), 150)
    finally:
        t38.close()
        audio.close()
        t38_ep.close()
        audio_ep.close()
        ng_command(rtpengine.ng_port, {"command": "delete", "call-id": call_id})

    for result in (got_t38, got_audio):
        assert result.success, (result, rtpengine.log.read_text()[-3000:])
        assert result.pages_transferred == 2
    assert got_t38.remote_ident == ("+49 40 2222" if t38_sends else "+49 30 1111")
    assert t38.ignored == 0 and t38.rejected == 0
    assert t38.sender.oversize == 0
    assert_same_pages(sent, received)
