"""UDPTL: wire format, redundancy within the max datagram, loss recovery, FEC, bad input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fax.t38.udptl import (
    UdptlError,
    UdptlPacket,
    UdptlReceiver,
    UdptlSender,
    decode,
    encode,
    fec_packets,
    ifp_length,
)

# Real IFPs as spandsp builds them: an indicator, V.21 HDLC data, a non-ECM data chunk.
NO_SIGNAL = b"\x00"
CNG = b"\x02"
HDLC = bytes.fromhex("c001800002ff0313")  # v21 hdlc-data, 3 octets
IMAGE = b"\xd0\x01\xe0\x00\x35" + bytes(range(1, 55))  # v17-14400 t4-non-ecm-data


def ifp(n: int) -> bytes:
    """A distinct valid IFP: v21 hdlc-data carrying one octet n."""
    return bytes((0xC0, 0x01, 0x80, 0x00, 0x00, n & 0xFF))


def test_encoding_matches_the_asn1_layout() -> None:
    packet = UdptlPacket(0x1234, b"\x06", (b"\x00", b"\x02"))
    assert encode(packet) == bytes.fromhex("1234 01 06 00 02 01 00 01 02".replace(" ", ""))
    assert decode(encode(packet)) == packet


def test_long_fields_use_two_octet_lengths() -> None:
    packet = UdptlPacket(7, b"\xd0" + bytes(300), (bytes(200),))
    data = encode(packet)
    assert data[2:4] == bytes((0x81, 0x2D))  # 301 octets
    assert decode(data) == packet


def test_fec_round_trip() -> None:
    packet = UdptlPacket(9, b"\x02", fec_span=3, fec=(b"\x01\x02", b"\x03"))
    assert decode(encode(packet)) == packet


def test_sender_numbers_and_repeats_previous_ifps() -> None:
    sender = UdptlSender(redundancy=3, max_datagram=400, first_seq=65534)
    packets = [decode(sender.packet(ifp(n))) for n in range(5)]
    assert [p.seq for p in packets] == [65534, 65535, 0, 1, 2]
    assert packets[0].secondary == ()
    assert packets[2].secondary == (ifp(1), ifp(0))  # newest first
    assert packets[4].secondary == (ifp(3), ifp(2), ifp(1))


@pytest.mark.parametrize("max_datagram", [12, 20, 30, 72])
def test_sender_stays_within_the_max_datagram(max_datagram: int) -> None:
    sender = UdptlSender(redundancy=5, max_datagram=max_datagram)
    for n in range(20):
        assert len(sender.packet(ifp(n))) <= max_datagram
    assert sender.oversize == 0


def test_oversized_primary_is_still_sent_and_counted() -> None:
    sender = UdptlSender(redundancy=3, max_datagram=40)
    data = sender.packet(IMAGE)
    assert decode(data).primary == IMAGE
    assert sender.oversize == 1


def test_receiver_delivers_in_order_and_drops_late_and_repeats() -> None:
    sender = UdptlSender(redundancy=0)
    data = [sender.packet(ifp(n)) for n in range(4)]
    receiver = UdptlReceiver()
    assert receiver.receive(data[0]) == [(0, ifp(0))]
    assert receiver.receive(data[0]) == []  # repeat
    assert receiver.receive(data[2]) == [(2, ifp(2))]  # 1 missing, no redundancy
    assert receiver.receive(data[1]) == []  # too late now
    assert (receiver.lost, receiver.late) == (1, 2)


def test_redundancy_recovers_lost_packets() -> None:
    sender = UdptlSender(redundancy=3)
    data = [sender.packet(ifp(n)) for n in range(10)]
    receiver = UdptlReceiver()
    got = []
    for n in (0, 1, 5, 6, 9):  # 2, 3, 4 and 7, 8 lost
        got += receiver.receive(data[n])
    assert got == [(n, ifp(n)) for n in range(10)]
    assert receiver.recovered == 5
    assert receiver.lost == 0


def test_redundancy_and_reordering_under_random_loss() -> None:
    rng = random.Random(4)
    sender = UdptlSender(redundancy=3)
    data = [sender.packet(ifp(n)) for n in range(2000)]
    kept = [d for d in data if rng.random() > 0.05]
    for i in range(0, len(kept) - 1, 17):  # swap some neighbours
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    receiver = UdptlReceiver()
    got = [pair for d in kept for pair in receiver.receive(d)]
    seqs = [seq for seq, _ in got]
    assert seqs == sorted(set(seqs), key=seqs.index)  # in order, no repeats (mod 65536)
    assert len(got) >= 1995
    assert all(payload == ifp(seq) for seq, payload in got)


def test_fec_repairs_a_single_loss_per_group() -> None:
    ifps = [ifp(n) for n in range(12)] + [NO_SIGNAL, CNG, IMAGE, HDLC]
    data = fec_packets(ifps, span=3, entries=1)
    receiver = UdptlReceiver()
    got = []
    for n, d in enumerate(data):
        if n in (4, 9, 14):  # each covered by the next packet's parity
            continue
        got += receiver.receive(d)
    assert got == list(enumerate(ifps))
    assert receiver.recovered == 3


def test_fec_with_two_entries_interleaves() -> None:
    ifps = [ifp(n) for n in range(16)]
    data = fec_packets(ifps, span=2, entries=2)
    receiver = UdptlReceiver()
    got = []
    for n, d in enumerate(data):
        if n in (6, 7):  # two in a row: one parity entry each
            continue
        got += receiver.receive(d)
    assert got == list(enumerate(ifps))


def test_ifp_length_cuts_the_parity_padding() -> None:
    for packet in (NO_SIGNAL, CNG, HDLC, IMAGE, ifp(3)):
        assert ifp_length(packet + bytes(7)) == len(packet)
        assert ifp_length(packet) == len(packet)
    # T.38 version 0 packs a field without data into half an octet: fcs-OK + sig-end.
    assert ifp_length(b"\xc0\x02\x21" + bytes(4), 0) == 3
    assert ifp_length(b"\xc0\x01\x20" + bytes(4), 0) == 3
    # Later versions spend an octet on it: hdlc-sig-end (field type 1 << 3).
    assert ifp_length(b"\xc0\x01\x08" + bytes(4), 2) == 3
    assert ifp_length(b"\xc0\x01", 0) is None  # a count with no field
    assert ifp_length(b"\x20", 0) is None  # extended indicator cut short


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00\x01",  # no primary length
        b"\x00\x01\x05\x00",  # primary shorter than announced
        b"\x00\x01\x00\x00\x00",  # empty primary
        b"\x00\x01\x01\x02",  # no error-recovery
        b"\x00\x01\x01\x02\x40\x00",  # unknown choice
        b"\x00\x01\x01\x02\x00\x02\x01\x00",  # 2 secondaries announced, 1 there
        b"\x00\x01\x01\x02\x00\x00\xff",  # trailing octet
        b"\x00\x01\xc1\x02\x00\x00",  # fragmented length
        b"\x00\x01\x01\x02\x80\x00\x00",  # fec-npackets with zero-length integer
        b"\x00\x01\x01\x02\x80\x01\x00\x01\x01\x01",  # FEC with fec-npackets 0
    ],
)
def test_decode_refuses_malformed_packets(data: bytes) -> None:
    with pytest.raises(UdptlError):
        decode(data)


@given(st.binary(max_size=200))
def test_decode_raises_only_udptl_error(data: bytes) -> None:
    try:
        packet = decode(data)
    except UdptlError:
        return
    assert decode(encode(packet)) == packet


@given(st.lists(st.binary(max_size=60), max_size=30))
def test_receiver_raises_only_udptl_error(datagrams: list[bytes]) -> None:
    receiver = UdptlReceiver()
    for data in datagrams:
        try:
            out = receiver.receive(data)
        except UdptlError:
            continue
        assert all(0 <= seq <= 0xFFFF and payload for seq, payload in out)


@given(st.binary(max_size=80), st.integers(0, 3))
def test_ifp_length_never_raises(data: bytes, version: int) -> None:
    length = ifp_length(data, version)
    assert length is None or 0 < length <= len(data)
