"""UDPTL (ITU-T T.38 clause 9.1 and its ASN.1): packets, redundancy and FEC.

A UDPTL packet (aligned PER) is::

    seq-number        2 octets, big-endian
    primary-ifp       open type: length determinant + IFP octets
    error-recovery    1 octet choice: 0x00 secondary IFPs | 0x80 FEC
      secondary:      count (length determinant), then each IFP as an open type,
                      newest first (seq-1, seq-2, …)
      fec-info:       fec-npackets as a 1-octet-length integer, then a count and
                      that many octet strings; entry m of packet l is the XOR of the
                      packets l+m-k*E for k = npackets..1 (E = number of entries)

``UdptlSender`` numbers packets with real increasing sequence numbers and adds as many
previous IFPs as fit in the far end's ``T38FaxMaxDatagram``; ``UdptlReceiver`` hands
the IFPs on in sequence order, recovering lost ones from redundancy or FEC.
``decode`` raises only ``UdptlError``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "UdptlError",
    "UdptlPacket",
    "UdptlReceiver",
    "UdptlSender",
    "decode",
    "encode",
    "fec_packets",
    "ifp_length",
]

_FEC_WINDOW = 32  # how many received IFPs are kept for FEC repair


class UdptlError(ValueError):
    """Bytes that are not a well-formed UDPTL packet."""


@dataclass(frozen=True, slots=True)
class UdptlPacket:
    """One UDPTL packet. ``secondary`` is newest first; FEC is ``fec_span`` + ``fec``."""

    seq: int
    primary: bytes
    secondary: tuple[bytes, ...] = ()
    fec_span: int | None = None
    fec: tuple[bytes, ...] = field(default=())


def _put_length(out: bytearray, length: int) -> None:
    # Aligned PER length determinant; fragments (>= 16384) never occur: a datagram is smaller.
    if length < 0x80:
        out.append(length)
    elif length < 0x4000:
        out += bytes((0x80 | (length >> 8), length & 0xFF))
    else:
        raise UdptlError(f"UDPTL field too long: {length} octets")


def encode(packet: UdptlPacket) -> bytes:
    """The wire form of ``packet``."""
    out = bytearray(((packet.seq >> 8) & 0xFF, packet.seq & 0xFF))
    _put_length(out, len(packet.primary))
    out += packet.primary
    if packet.fec_span is None:
        out.append(0x00)
        _put_length(out, len(packet.secondary))
        for ifp in packet.secondary:
            _put_length(out, len(ifp))
            out += ifp
    else:
        out.append(0x80)
        out += bytes((1, packet.fec_span & 0xFF))
        _put_length(out, len(packet.fec))
        for entry in packet.fec:
            _put_length(out, len(entry))
            out += entry
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def octet(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise UdptlError(f"UDPTL packet truncated in {what}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def length(self, what: str) -> int:
        first = self.octet(what)
        if first < 0x80:
            return first
        if first < 0xC0:
            return ((first & 0x3F) << 8) | self.octet(what)
        raise UdptlError(f"UDPTL fragmented length in {what} (not used by T.38 datagrams)")

    def octets(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise UdptlError(f"UDPTL packet truncated in {what}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk


def decode(data: bytes) -> UdptlPacket:
    """Parse a datagram; raises ``UdptlError`` (and nothing else) for malformed input."""
    reader = _Reader(bytes(data))
    seq = (reader.octet("sequence number") << 8) | reader.octet("sequence number")
    primary = reader.octets(reader.length("primary IFP"), "primary IFP")
    if not primary:
        raise UdptlError("UDPTL primary IFP is empty")
    choice = reader.octet("error recovery")
    if choice == 0x00:
        count = reader.length("redundancy count")
        secondary = tuple(
            reader.octets(reader.length("secondary IFP"), "secondary IFP") for _ in range(count)
        )
        packet = UdptlPacket(seq, primary, secondary)
    elif choice == 0x80:
        size = reader.octet("fec-npackets")
        if not 1 <= size <= 4:
            raise UdptlError(f"UDPTL fec-npackets has a bad length: {size}")
        span = int.from_bytes(reader.octets(size, "fec-npackets"), "big")
        count = reader.length("FEC count")
        fec = tuple(reader.octets(reader.length("FEC entry"), "FEC entry") for _ in range(count))
        if fec and span < 1:
            raise UdptlError("UDPTL FEC with fec-npackets 0")
        packet = UdptlPacket(seq, primary, fec_span=span, fec=fec)
    else:
        raise UdptlError(f"UDPTL error recovery choice unknown: 0x{choice:02x}")
    if reader.pos != len(reader.data):
        raise UdptlError(f"UDPTL packet has {len(reader.data) - reader.pos} trailing octets")
    return packet


def ifp_length(ifp: bytes, t38_version: int = 0) -> int | None:
    """How many leading octets of ``ifp`` form one IFP packet (None when it does not parse).

    Needed after FEC repair, whose result carries the zero padding of the parity.
    """
    try:
        b0 = ifp[0]
        if not b0 & 0x40:  # t30-indicator: one octet, two with the extension bit
            size = 2 if b0 & 0x20 else 1
            return size if size <= len(ifp) else None
        pos = 2 if b0 & 0x20 else 1
        if not b0 & 0x80:  # no data field
            return pos if pos <= len(ifp) else None
        count = ifp[pos]
        pos += 1
        half = False
        for _ in range(count):
            if t38_version == 0:
                # T.38 (1998) packs a field without data into half an octet.
                if half:
                    present = bool(ifp[pos] & 0x08)
                    pos += 1
                    half = False
                else:
                    present = bool(ifp[pos] & 0x80)
                    if present:
                        pos += 1
                    else:
                        half = True
            else:
                present = bool(ifp[pos] & 0x80)
                pos += 2 if ifp[pos] & 0x40 else 1
            if present:
                pos += 2 + ((ifp[pos] << 8) | ifp[pos + 1]) + 1
        if half:
            pos += 1
        return pos if pos <= len(ifp) else None
    except IndexError:
        return None


class UdptlSender:
    """Builds outgoing packets: increasing sequence numbers, redundancy within max datagram.

    ``redundancy`` previous IFPs are repeated in each packet (fewer when they would push
    the packet past ``max_datagram``, the far end's ``T38FaxMaxDatagram``).
    """

    def __init__(self, *, redundancy: int = 3, max_datagram: int = 400, first_seq: int = 0):
        self.redundancy = max(0, redundancy)
        self.max_datagram = max_datagram
        self.seq = first_seq & 0xFFFF
        self._history: deque[bytes] = deque(maxlen=max(1, self.redundancy))
        self.oversize = 0  # primaries that alone exceeded max_datagram (sent anyway)

    def packet(self, ifp: bytes) -> bytes:
        """The next datagram carrying ``ifp``."""
        secondary: list[bytes] = []
        size = 2 + 2 + len(ifp) + 1 + 1  # seq, primary length + data, choice, count
        if size > self.max_datagram:
            self.oversize += 1
        if self.redundancy:
            for old in reversed(self._history):
                extra = len(old) + (1 if len(old) < 0x80 else 2)
                if size + extra > self.max_datagram:
                    break
                secondary.append(old)
                size += extra
            self._history.append(ifp)
        data = encode(UdptlPacket(self.seq, ifp, tuple(secondary)))
        self.seq = (self.seq + 1) & 0xFFFF
        return data


def fec_packets(
    ifps: list[bytes], *, span: int = 3, entries: int = 1, first_seq: int = 0
) -> list[bytes]:
    """Encode ``ifps`` as consecutive UDPTL packets with FEC (for peers that ask for FEC)."""
    out = []
    for i, ifp in enumerate(ifps):
        fec: list[bytes] = []
        for m in range(entries):
            covered = [i + m - k * entries for k in range(span, 0, -1)]
            if covered[0] < 0:
                break
            parity = bytearray(max(len(ifps[j]) for j in covered))
            for j in covered:
                for n, octet in enumerate(ifps[j]):
                    parity[n] ^= octet
            fec.append(bytes(parity))
        seq = (first_seq + i) & 0xFFFF
        out.append(encode(UdptlPacket(seq, ifp, fec_span=span, fec=tuple(fec))))
    return out


class UdptlReceiver:
    """Turns received datagrams into IFPs in sequence order, repairing losses where it can.

    ``receive(datagram)`` returns ``(seq, ifp)`` pairs to hand to the T.38 core, oldest
    first; packets older than what was already delivered (late or repeated) yield nothing.
    A gap that neither redundancy nor FEC can fill is left to the T.38 core, which sees
    the jump in sequence numbers.
    """

    def __init__(self, t38_version: int = 0) -> None:
        self.t38_version = t38_version
        self.expected: int | None = None  # next sequence number to deliver
        self.recovered = 0
        self.lost = 0
        self.late = 0
        # Received (or repaired) IFPs by unwrapped seq, and FEC data per received packet.
        self._ifps: dict[int, bytes] = {}
        self._fec: dict[int, tuple[int, tuple[bytes, ...]]] = {}

    def _unwrap(self, seq: int) -> int:
        if self.expected is None:
            return seq
        delta = ((seq - self.expected + 0x8000) & 0xFFFF) - 0x8000
        return self.expected + delta

    def receive(self, datagram: bytes) -> list[tuple[int, bytes]]:
        """Decode one datagram and return the IFPs now deliverable (may raise UdptlError)."""
        packet = decode(datagram)
        ext = self._unwrap(packet.seq)
        if self.expected is None:
            self.expected = ext
        if ext < self.expected:
            self.late += 1
            return []
        self._ifps[ext] = packet.primary
        if packet.fec_span is not None:
            if packet.fec:
                self._fec[ext] = (packet.fec_span, packet.fec)
            self._repair_fec(ext)
        else:
            for back, older in enumerate(packet.secondary, start=1):
                old = ext - back
                if old >= self.expected and old not in self._ifps:
                    self._ifps[old] = older
                    self.recovered += 1
        out: list[tuple[int, bytes]] = []
        nxt = self.expected
        while nxt <= ext:
            found = self._ifps.get(nxt)
            if found is None:
                self.lost += 1
            else:
                out.append((nxt & 0xFFFF, found))
            nxt += 1
        self.expected = ext + 1
        self._forget(ext)
        return out

    def _repair_fec(self, newest: int) -> None:
        for owner in sorted(self._fec, reverse=True):
            span, entries = self._fec[owner]
            count = len(entries)
            for m, parity in enumerate(entries):
                covered = [owner + m - k * count for k in range(span, 0, -1)]
                missing = [j for j in covered if j not in self._ifps]
                if len(missing) != 1 or missing[0] < (self.expected or 0):
                    continue
                repaired = bytearray(parity)
                for j in covered:
                    if j != missing[0]:
                        for n, octet in enumerate(self._ifps[j][: len(repaired)]):
                            repaired[n] ^= octet
                # Parity is as long as the longest packet covered: cut the zero padding.
                length = ifp_length(bytes(repaired), self.t38_version)
                self._ifps[missing[0]] = bytes(repaired[: length or len(repaired)])
                self.recovered += 1

    def _forget(self, newest: int) -> None:
        horizon = newest - _FEC_WINDOW
        for table in (self._ifps, self._fec):
            for key in [k for k in table if k < horizon]:
                del table[key]
