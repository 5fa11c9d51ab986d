"""RTP (RFC 3550) packets and a jitter buffer that plays audio out by the local clock.

A fax modem needs a continuous stream: the receiver hands spandsp exactly as many
samples as the local clock says have passed, in timestamp order. Packets that arrive out
of order are put back in place; a packet that never comes is reported as a gap (the
session calls ``fax_rx_fillin`` for it, which keeps the demodulator's timing); a late
packet whose time has already been played is dropped.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

__all__ = ["JitterBuffer", "RtpError", "RtpPacket", "RtpSender"]

_HEADER = struct.Struct("!BBHII")
_VERSION = 2


class RtpError(ValueError):
    """Bytes that are not an RTP packet (the only error ``RtpPacket.parse`` raises)."""


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet: header fields and payload (CSRCs and extensions are skipped)."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False

    def encode(self) -> bytes:
        """The packet on the wire (no CSRC, no extension, no padding)."""
        return (
            _HEADER.pack(
                _VERSION << 6,
                (0x80 if self.marker else 0) | (self.payload_type & 0x7F),
                self.sequence & 0xFFFF,
                self.timestamp & 0xFFFFFFFF,
                self.ssrc & 0xFFFFFFFF,
            )
            + self.payload
        )

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Decode a datagram; raises ``RtpError`` for anything that is not RTP version 2."""
        if len(data) < _HEADER.size:
            raise RtpError(f"RTP packet too short: {len(data)} bytes")
        b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        if b0 >> 6 != _VERSION:
            raise RtpError(f"not RTP version 2: version {b0 >> 6}")
        offset = _HEADER.size + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in words
            if len(data) < offset + 4:
                raise RtpError("RTP header extension truncated")
            (words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * words
        end = len(data)
        if b0 & 0x20:  # padding: the last octet counts the padding octets
            if end == 0 or data[-1] == 0:
                raise RtpError("RTP padding length is zero")
            end -= data[-1]
        if offset > end:
            raise RtpError("RTP header longer than the packet")
        return cls(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), bool(b1 & 0x80))


class RtpSender:
    """Numbers outgoing packets: random SSRC, sequence and timestamp origin (RFC 3550)."""

    def __init__(self, payload_type: int, samples_per_packet: int = 160) -> None:
        self.payload_type = payload_type
        self.samples_per_packet = samples_per_packet
        self.ssrc = secrets.randbits(32)
        self.sequence = secrets.randbits(16)
        self.timestamp = secrets.randbits(32)
        self._first = True

    def packet(self, payload: bytes, samples: int | None = None) -> bytes:
        """The next packet carrying ``payload``; the marker is set on the first one only."""
        data = RtpPacket(
            self.payload_type, self.sequence, self.timestamp, self.ssrc, payload, self._first
        ).encode()
        self._first = False
        self.sequence = (self.sequence + 1) & 0xFFFF
        count = self.samples_per_packet if samples is None else samples
        self.timestamp = (self.timestamp + count) & 0xFFFFFFFF
        return data


class JitterBuffer:
    """Reorders received audio by RTP timestamp and plays it out by the local sample clock.

    ``push`` files a packet's decoded samples under its (unwrapped) timestamp. ``pull(n)``
    returns the next ``n`` samples as a list of chunks: ``bytes`` of audio, or an ``int``
    count of missing samples (a gap to fill in). Playout starts ``delay`` samples after the
    first packet arrives, which absorbs that much jitter; until then ``pull`` returns
    missing samples. Timestamps before the playout point are dropped as late.
    """

    def __init__(self, delay: int = 480, max_packets: int = 500) -> None:
        self.delay = delay
        self.max_packets = max_packets
        self._packets: dict[int, bytes] = {}
        self._ref: int | None = None  # last raw timestamp seen, for unwrapping
        self._ref_ext = 0  # its unwrapped value
        self._play: int | None = None  # unwrapped timestamp of the next sample to play
        self._ssrc: int | None = None
        self._pending = b""  # the unplayed tail of a packet cut by the previous pull
        self._end: int | None = None  # unwrapped timestamp just past the newest audio
        self.late = 0
        self.duplicates = 0
        self.missing = 0

    def _unwrap(self, ts: int) -> int:
        if self._ref is None:
            self._ref, self._ref_ext = ts, ts
            return ts
        delta = ((ts - self._ref + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        ext = self._ref_ext + delta
        if delta > 0:
            self._ref, self._ref_ext = ts, ext
        return ext

    def push(self, packet: RtpPacket, pcm: bytes) -> None:
        """File one received packet's samples (16-bit linear)."""
        if self._ssrc != packet.ssrc:
            if self._ssrc is not None:
                # A new source (e.g. re-INVITE, gateway switch): start over after what is queued.
                self._ref = None
            self._ssrc = packet.ssrc
            self._packets.clear()
            self._pending = b""
            ext = self._unwrap(packet.timestamp)
            self._play = ext - self.delay
            self._end = ext
        else:
            ext = self._unwrap(packet.timestamp)
        assert self._play is not None and self._end is not None
        if ext + len(pcm) // 2 <= self._play:
            self.late += 1
            return
        if ext in self._packets:
            self.duplicates += 1
            return
        if len(self._packets) >= self.max_packets:
            return
        self._packets[ext] = pcm
        self._end = max(self._end, ext + len(pcm) // 2)

    def buffered(self) -> int:
        """Samples from the playout point to the end of the newest packet (gaps included)."""
        if self._play is None or self._end is None:
            return 0
        return max(0, self._end - self._play)

    def pull(self, samples: int) -> list[bytes | int]:
        """The next ``samples`` samples: audio chunks and missing-sample counts, in order."""
        out: list[bytes | int] = []
        if self._play is None:
            out.append(samples)
            return out
        if self._pending:
            take = min(samples, len(self._pending) // 2)
            out.append(self._pending[: 2 * take])
            self._pending = self._pending[2 * take :]
            self._play += take
            samples -= take
        while samples > 0:
            pcm = self._packets.pop(self._play, None)
            if pcm is None:
                pcm = self._find_overlapping()
            if pcm is not None:
                take = min(samples, len(pcm) // 2)
                out.append(pcm[: 2 * take])
                self._pending = pcm[2 * take :]
                self._play += take
                samples -= take
                continue
            gap = samples
            if self._packets:
                gap = min(gap, max(1, min(self._packets) - self._play))
            out.append(gap)
            self.missing += gap
            self._play += gap
            samples -= gap
        return out

    def _find_overlapping(self) -> bytes | None:
        """A packet that started before the playout point but still reaches past it."""
        assert self._play is not None
        for start in sorted(k for k in self._packets if k < self._play):
            pcm = self._packets.pop(start)
            skip = self._play - start
            if 2 * skip < len(pcm):
                return pcm[2 * skip :]
        return None
