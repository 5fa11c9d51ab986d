"""RTP packets and the jitter buffer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fax.t38.rtp import JitterBuffer, RtpError, RtpPacket, RtpSender


def test_packet_round_trip() -> None:
    packet = RtpPacket(8, 65535, 0xFFFFFFFF, 0x12345678, b"\xd5" * 160, marker=True)
    data = packet.encode()
    assert data[:2] == b"\x80\x88"  # version 2, marker + payload type 8
    assert RtpPacket.parse(data) == packet


def test_parse_skips_csrcs_extension_and_padding() -> None:
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0, 7, 160, 1)
    csrcs = b"\x00" * 8
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\x01\x02\x03\x04"
    payload = b"abcd"
    padding = b"\x00\x00\x03"
    packet = RtpPacket.parse(header + csrcs + extension + payload + padding)
    assert packet.payload == payload
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (7, 160, 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        b"\x40" + b"\x00" * 11,  # version 1
        b"\x8f" + b"\x00" * 11,  # 15 CSRCs announced, none there
        b"\x90" + b"\x00" * 11 + b"\x00\x00",  # extension header truncated
        b"\xa0" + b"\x00" * 11,  # padding with a zero count
        b"\xa0" + b"\x00" * 11 + b"\x20",  # more padding than packet
    ],
)
def test_parse_refuses_what_is_not_rtp(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


@given(st.binary(max_size=120))
def test_parse_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert 0 <= packet.payload_type < 128


def test_sender_numbers_packets() -> None:
    sender = RtpSender(0)
    first = RtpPacket.parse(sender.packet(b"x" * 160))
    second = RtpPacket.parse(sender.packet(b"y" * 160))
    assert first.marker and not second.marker
    assert second.sequence == (first.sequence + 1) & 0xFFFF
    assert second.timestamp == (first.timestamp + 160) & 0xFFFFFFFF
    assert first.ssrc == second.ssrc


def frame(seq: int, ts: int, fill: int, ssrc: int = 5) -> tuple[RtpPacket, bytes]:
    return RtpPacket(0, seq, ts, ssrc, b""), bytes([fill]) * 320


def test_jitter_buffer_reorders_and_reports_gaps() -> None:
    buf = JitterBuffer(delay=160)
    buf.push(*frame(1, 1000, 1))
    assert buf.pull(160) == [160]  # the playout delay
    buf.push(*frame(3, 1320, 3))  # overtakes packet 2
    buf.push(*frame(2, 1160, 2))
    assert buf.pull(480) == [b"\x01" * 320, b"\x02" * 320, b"\x03" * 320]
    buf.push(*frame(5, 1640, 5))  # packet 4 is lost
    assert buf.pull(320) == [160, b"\x05" * 320]
    assert buf.missing == 160 + 160


def test_jitter_buffer_gap_then_audio_in_one_pull() -> None:
    buf = JitterBuffer(delay=0)
    buf.push(*frame(1, 0, 1))
    buf.push(*frame(3, 320, 3))
    assert buf.pull(480) == [b"\x01" * 320, 160, b"\x03" * 320]
    assert buf.missing == 160


def test_jitter_buffer_splits_packets_across_pulls() -> None:
    buf = JitterBuffer(delay=0)
    buf.push(*frame(1, 0, 1))
    buf.push(*frame(2, 160, 2))
    assert buf.pull(100) == [b"\x01" * 200]
    assert buf.pull(100) == [b"\x01" * 120, b"\x02" * 80]
    assert buf.pull(120) == [b"\x02" * 240]


def test_jitter_buffer_drops_late_and_duplicate_packets() -> None:
    buf = JitterBuffer(delay=0)
    buf.push(*frame(10, 5000, 1))
    buf.push(*frame(10, 5000, 1))
    assert buf.duplicates == 1
    assert buf.pull(160) == [b"\x01" * 320]
    buf.push(*frame(9, 4840, 9))  # its time has been played
    assert buf.late == 1


def test_jitter_buffer_timestamp_wraps() -> None:
    buf = JitterBuffer(delay=0)
    buf.push(*frame(1, 0xFFFFFF60, 1))
    buf.push(*frame(2, 0x00000000, 2))
    assert buf.pull(320) == [b"\x01" * 320, b"\x02" * 320]


def test_jitter_buffer_restarts_on_a_new_source() -> None:
    buf = JitterBuffer(delay=0)
    buf.push(*frame(1, 100, 1))
    assert buf.pull(160) == [b"\x01" * 320]
    buf.push(*frame(77, 900000, 7, ssrc=6))
    assert buf.pull(160) == [b"\x07" * 320]


def test_nothing_received_is_all_missing() -> None:
    assert JitterBuffer().pull(160) == [160]


def test_buffered_counts_from_the_playout_point_to_the_newest_audio() -> None:
    buf = JitterBuffer(delay=160)
    assert buf.buffered() == 0
    buf.push(*frame(1, 1000, 1))
    assert buf.buffered() == 320  # the delay plus one packet
    buf.push(*frame(3, 1320, 3))
    assert buf.buffered() == 640  # the gap for packet 2 counts
    buf.pull(400)
    assert buf.buffered() == 240
