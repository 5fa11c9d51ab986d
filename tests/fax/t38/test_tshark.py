"""tshark, an independent UDPTL/T.38/T.30 decoder, reads a capture of a real exchange.

The relay between the two sessions writes every datagram it forwards into a pcap (IPv4/UDP,
as on the wire); tshark is told that both sessions' ports carry T.38.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fax.t38.ticker import SimulatedTicker
from tests.fax.t38.support import LossyRelay, PcapWriter, assert_same_pages, run_pair

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# T.30 Facsimile Control values as tshark numbers them (FCF without the X bit).
FRAMES = {
    "DIS": 1,
    "CFR": 33,
    "MCF": 49,
    "DCS": 65,
    "DCN": 95,
    "MPS": 114,
    "EOP": 116,
    "PPS": 125,
}


def tshark(pcap: Path, ports: list[int], *args: str) -> str:
    exe = shutil.which("tshark")
    assert exe is not None, "tshark is not installed (Debian package tshark)"
    decode_as = [arg for port in ports for arg in ("-d", f"udp.port=={port},t38")]
    done = subprocess.run(
        [exe, "-n", "-r", str(pcap), *decode_as, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


async def captured_exchange(tmp_path: Path, ecm: bool) -> tuple[Path, list[int], int]:
    pcap = tmp_path / "t38.pcap"
    writer = PcapWriter(pcap)
    relay = LossyRelay(pcap=writer)
    pair = await run_pair(tmp_path, ecm=ecm, ticker=SimulatedTicker(), relay=relay)
    assert pair.sender.success and pair.receiver.success
    assert_same_pages(pair.sent, pair.received)
    ports = [relay.peers["a"][1], relay.peers["b"][1]]
    return pcap, ports, writer.count


def frames_in_order(pcap: Path, ports: list[int]) -> list[tuple[int, int | None, str, str]]:
    """Per packet: frame number, T.30 FCF (first), indicator and field types (first)."""
    out = tshark(
        pcap, ports, "-T", "fields", "-E", "occurrence=f", "-E", "separator=;",
        "-e", "frame.number", "-e", "t30.FacsimileControl", "-e", "t38.t30_indicator",
        "-e", "t38.field_type",
    )
    rows = []
    for line in out.splitlines():
        number, fcf, indicator, field = line.split(";")
        rows.append((int(number), int(fcf) if fcf else None, indicator, field))
    return rows


@pytest.mark.parametrize("ecm", [False, True], ids=["no-ecm", "ecm"])
async def test_every_packet_is_t38_and_none_is_malformed(tmp_path: Path, ecm: bool) -> None:
    pcap, ports, count = await captured_exchange(tmp_path, ecm)

    assert count > 100
    assert tshark(pcap, ports, "-Y", "_ws.malformed") == ""
    assert tshark(pcap, ports, "-Y", "_ws.expert.severity >= error") == ""
    decoded = tshark(pcap, ports, "-Y", "t38", "-T", "fields", "-e", "frame.number")
    assert len(decoded.split()) == count  # every UDPTL packet decodes as T.38
    seqs = tshark(pcap, ports, "-T", "fields", "-e", "udp.dstport", "-e", "t38.seq_number")
    by_port: dict[str, list[int]] = {}
    for line in seqs.splitlines():
        port, seq = line.split("\t")
        by_port.setdefault(port, []).append(int(seq.split(",")[0]))
    for numbers in by_port.values():  # real increasing sequence numbers per direction
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def test_the_t30_frames_expected_appear(tmp_path: Path) -> None:
    pcap, ports, _ = await captured_exchange(tmp_path, ecm=False)
    rows = frames_in_order(pcap, ports)
    first: dict[int, int] = {}
    for number, fcf, _, _ in rows:
        if fcf is not None:
            first.setdefault(fcf, number)
    for name in ("DIS", "DCS", "CFR", "MPS", "MCF", "EOP", "DCN"):
        assert FRAMES[name] in first, f"{name} not in the capture"
    assert first[FRAMES["DIS"]] < first[FRAMES["DCS"]] < first[FRAMES["CFR"]]
    assert first[FRAMES["MPS"]] < first[FRAMES["EOP"]] < first[FRAMES["DCN"]]
    # TCF (transferred): non-ECM data (field type 6) after the DCS, before the CFR.
    tcf = [n for n, _, _, field in rows if field == "6"]
    assert any(first[FRAMES["DCS"]] < n < first[FRAMES["CFR"]] for n in tcf)
    verbose = tshark(pcap, ports, "-V")
    assert "t4-non-ecm-sig-end" in verbose
    assert "Digital Command Signal" in verbose and "Disconnect" in verbose


async def test_ecm_pages_go_as_partial_page_signals(tmp_path: Path) -> None:
    pcap, ports, _ = await captured_exchange(tmp_path, ecm=True)
    fcfs = {fcf for _, fcf, _, _ in frames_in_order(pcap, ports) if fcf is not None}
    assert {FRAMES[n] for n in ("DIS", "DCS", "CFR", "PPS", "MCF", "DCN")} <= fcfs
