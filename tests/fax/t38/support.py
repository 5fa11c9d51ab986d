"""Test helpers for the fax media layer: TIFF pages, a lossy UDP relay with a pcap, ng client."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageChops, ImageDraw

from fax.t38.endpoint import Address, MediaEndpoint
from fax.t38.params import AudioParams, FaxJob, FaxResult, PageProgress, T38Params
from fax.t38.session import AudioFaxSession, FaxSession, T38Session
from fax.t38.ticker import Ticker

A4_FINE = (1728, 2292)
A4_STANDARD = (1728, 1146)


def make_tiff(path: Path, pages: int = 2, *, fine: bool = True) -> Path:
    """A TIFF-F file as fax.md describes: 1728 px wide, G4, 204x196 (or 204x98) dpi."""
    size = A4_FINE if fine else A4_STANDARD
    images = []
    for k in range(pages):
        img = Image.new("1", size, 1)
        draw = ImageDraw.Draw(img)
        draw.text((120, 80 + 40 * k), f"Page {k + 1} of {pages}: fax media test", fill=0)
        draw.rectangle((200, 300, 1500, 420 + 60 * k), outline=0, width=4)
        for i in range(0, size[1] // 2, 37):  # diagonal stripes: every row differs
            draw.line((100 + i, 500 + i, 700 + (i * 3) % 900, 520 + i), fill=0, width=2)
        draw.ellipse((900, 600 + 20 * k, 1400, 1000), outline=0, width=6)
        images.append(img)
    dpi = (204, 196) if fine else (204, 98)
    images[0].save(
        path, "TIFF", compression="group4", dpi=dpi, save_all=True, append_images=images[1:]
    )
    return path


def read_pages(path: Path) -> list[Image.Image]:
    """Every page of a TIFF file, decoded to 1-bit images."""
    pages = []
    with Image.open(path) as img:
        for i in range(getattr(img, "n_frames", 1)):
            img.seek(i)
            pages.append(img.convert("1").copy())
    return pages


def assert_same_pages(sent: Path, received: Path, *, skip_top: int = 0) -> None:
    """The received pages are pixel-identical to the sent ones (below ``skip_top`` rows)."""
    want, got = read_pages(sent), read_pages(received)
    assert len(got) == len(want), f"{len(got)} pages received, {len(want)} sent"
    for n, (a, b) in enumerate(zip(want, got, strict=True), start=1):
        assert b.width == a.width, f"page {n}: width {b.width} != {a.width}"
        assert b.height == a.height + skip_top, f"page {n}: height {b.height} != {a.height}"
        crop = b.crop((0, skip_top, b.width, b.height))
        diff = ImageChops.difference(a, crop).getbbox()
        assert diff is None, f"page {n} differs in {diff}"


class PcapWriter:
    """A classic pcap file of IPv4/UDP datagrams (LINKTYPE_RAW) written as they pass."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("wb")
        self._file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        self.count = 0

    def write(self, src: Address, dst: Address, payload: bytes) -> None:
        """Record one datagram (real wall-clock timestamp; checksums zero, as allowed)."""
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
        total = 20 + len(udp)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            self.count & 0xFFFF,
            0,
            64,
            17,
            0,
            socket.inet_aton(src[0]),
            socket.inet_aton(dst[0]),
        )
        checksum = _ip_checksum(ip)
        ip = ip[:10] + struct.pack("!H", checksum) + ip[12:]
        now = time.time()
        self._file.write(
            struct.pack("<IIII", int(now), int((now % 1) * 1e6), total, total) + ip + udp
        )
        self.count += 1

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay, name: str) -> None:
        self.relay = relay
        self.name = name
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.relay.received(self.name, data, (str(addr[0]), int(addr[1])))


class LossyRelay:
    """A UDP relay between two peers that drops and delays datagrams; driven by a ticker.

    Peer A talks to ``address_a``, peer B to ``address_b``. Each datagram is dropped with
    probability ``loss``; with probability ``reorder`` it is held back 1-3 ticks, so later
    ones overtake it. Everything forwarded can be written to a pcap.
    """

    def __init__(
        self,
        peer_a: Address = ("127.0.0.1", 9),
        peer_b: Address = ("127.0.0.1", 9),
        *,
        loss: float = 0.0,
        reorder: float = 0.0,
        seed: int = 1,
        pcap: PcapWriter | None = None,
    ) -> None:
        self.peers = {"a": peer_a, "b": peer_b}
        self.loss = loss
        self.reorder = reorder
        self.random = random.Random(seed)
        self.pcap = pcap
        self._sides: dict[str, _Side] = {}
        self._held: list[tuple[int, str, bytes]] = []
        self._now = 0
        self.forwarded = 0
        self.dropped = 0
        self.delayed = 0
        self.error: BaseException | None = None

    async def start(self) -> None:
        """Bind both relay sockets on 127.0.0.1."""
        loop = asyncio.get_running_loop()
        for name in ("a", "b"):
            _, protocol = await loop.create_datagram_endpoint(
                lambda name=name: _Side(self, name), local_addr=("127.0.0.1", 0)
            )
            self._sides[name] = protocol

    def address(self, name: str) -> Address:
        """The relay address that peer ``name`` sends to."""
        transport = self._sides[name].transport
        assert transport is not None
        host, port = transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    @property
    def address_a(self) -> Address:
        """Where peer A sends."""
        return self.address("a")

    @property
    def address_b(self) -> Address:
        """Where peer B sends."""
        return self.address("b")

    def received(self, side: str, data: bytes, addr: Address) -> None:
        """A datagram from peer ``side``: drop, delay or forward it to the other peer."""
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        if self.random.random() < self.reorder:
            self.delayed += 1
            self._held.append((self._now + 160 * self.random.randint(1, 3), side, data))
            return
        self._forward(side, data)

    def _forward(self, side: str, data: bytes) -> None:
        other = "b" if side == "a" else "a"
        transport = self._sides[other].transport
        assert transport is not None
        transport.sendto(data, self.peers[other])
        if self.pcap is not None:
            self.pcap.write(self.address(other), self.peers[other], data)
        self.forwarded += 1

    def tick(self, samples: int) -> None:
        """Release the held datagrams that are due."""
        self._now += samples
        due = [h for h in self._held if h[0] <= self._now]
        self._held = [h for h in self._held if h[0] > self._now]
        for _, side, data in due:
            self._forward(side, data)

    def fail(self, exc: BaseException) -> None:
        """Ticker hook: keep the error for the test to see."""
        self.error = exc

    def close(self) -> None:
        """Close both sockets (and the pcap)."""
        for side in self._sides.values():
            if side.transport is not None:
                side.transport.close()
        if self.pcap is not None:
            self.pcap.close()


# -- rtpengine's ng control protocol: bencode over UDP ------------------------------


def bencode(value: object) -> bytes:
    """Bencode ints, strings/bytes, lists and dicts (keys sorted)."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list | tuple):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> object:
    """Decode one bencoded value (dict keys as str, strings as bytes)."""
    value, end = _bdecode(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes after bencoded value")
    return value


def _bdecode(data: bytes, i: int) -> tuple[object, int]:
    c = data[i : i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1 : end]), end + 1
    if c == b"l":
        i += 1
        items = []
        while data[i : i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        return items, i + 1
    if c == b"d":
        i += 1
        out: dict[str, object] = {}
        while data[i : i + 1] != b"e":
            key, i = _bdecode(data, i)
            assert isinstance(key, bytes)
            out[key.decode()], i = _bdecode(data, i)
        return out, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1 : colon + 1 + length], colon + 1 + length


def ng_command(port: int, message: dict[str, object], timeout: float = 5.0) -> dict[str, Any]:
    """Send one ng command to rtpengine on 127.0.0.1:port and return its answer."""
    cookie = os.urandom(6).hex().encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(cookie + b" " + bencode(message), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65535)
    got_cookie, _, body = data.partition(b" ")
    assert got_cookie == cookie, "ng reply for another command"
    answer = bdecode(body)
    assert isinstance(answer, dict)
    return answer


def free_udp_ports(count: int) -> Sequence[int]:
    """``count`` distinct UDP ports on 127.0.0.1 that are free right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# -- two sessions faxing each other on loopback ---------------------------------------


@dataclass
class Pair:
    """What ``run_pair`` leaves behind: both results, the files, the sessions."""

    sent: Path
    received: Path
    sender: FaxResult
    receiver: FaxResult
    sessions: tuple[FaxSession, FaxSession]
    progress: list[PageProgress] = field(default_factory=list)


async def run_pair(
    tmp_path: Path,
    *,
    kind: str = "t38",
    ecm: bool = True,
    fine: bool = True,
    pages: int = 2,
    ticker: Ticker | None = None,
    relay: LossyRelay | None = None,
    t38: T38Params | None = None,
    audio: AudioParams | None = None,
    sender_job: dict[str, Any] | None = None,
    receiver_job: dict[str, Any] | None = None,
    timeout: float = 120.0,
) -> Pair:
    """Fax ``pages`` pages from one session to another over real UDP sockets on loopback.

    With ``relay``, both sessions talk through it (it is bound here and driven by the
    ticker, which must then be given).
    """
    sent = make_tiff(tmp_path / "sent.tiff", pages, fine=fine)
    received = tmp_path / "received.tiff"
    ep_a = await MediaEndpoint.bind("127.0.0.1")
    ep_b = await MediaEndpoint.bind("127.0.0.1")
    remote_a, remote_b = ep_b.local_address, ep_a.local_address
    if relay is not None:
        assert ticker is not None
        relay.peers = {"a": ep_a.local_address, "b": ep_b.local_address}
        await relay.start()
        remote_a, remote_b = relay.address_a, relay.address_b
        ticker.add(relay)
    progress: list[PageProgress] = []
    job_a = FaxJob(send_file=sent, ident="+49 30 1111", ecm=ecm, **(sender_job or {}))
    job_b = FaxJob(receive_file=received, ident="+49 40 2222", ecm=ecm, **(receiver_job or {}))
    sessions: tuple[FaxSession, FaxSession]
    if kind == "t38":
        params = t38 or T38Params()
        sessions = (
            T38Session(ep_a, remote_a, job_a, params, ticker=ticker, on_page=progress.append),
            T38Session(ep_b, remote_b, job_b, params, ticker=ticker, on_page=progress.append),
        )
    else:
        aparams = audio or AudioParams()
        sessions = (
            AudioFaxSession(ep_a, remote_a, job_a, aparams, ticker=ticker, on_page=progress.append),
            AudioFaxSession(ep_b, remote_b, job_b, aparams, ticker=ticker, on_page=progress.append),
        )
    try:
        for s in sessions:
            s.start()
        res_a, res_b = await asyncio.wait_for(
            asyncio.gather(sessions[0].wait(), sessions[1].wait()), timeout
        )
    finally:
        for s in sessions:
            s.close()
        if relay is not None and ticker is not None:
            ticker.remove(relay)
            relay.close()
        ep_a.close()
        ep_b.close()
    return Pair(sent, received, res_a, res_b, sessions, progress)
