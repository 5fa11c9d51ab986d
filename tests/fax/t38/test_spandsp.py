"""The ctypes binding on its own: texts, logging, callbacks, freeing."""

from __future__ import annotations

import gc
import logging
import weakref
from pathlib import Path

import pytest

from fax.t38 import spandsp
from tests.fax.t38.support import make_tiff


def test_completion_code_and_frame_texts() -> None:
    assert spandsp.completion_code_to_str(0) == "OK"
    assert spandsp.completion_code_to_str(49) == "The call dropped prematurely"
    assert spandsp.frame_type_to_str(0x8C) == "MCF"  # spandsp's bit order


def drive(a: spandsp.T38Terminal, b: spandsp.T38Terminal, queues: dict[int, list[bytes]]) -> None:
    """Two terminals wired back to back in memory, 20 ms per step, until both finish."""
    seq = {0: 0, 1: 0}
    for _ in range(5000):
        done_a, done_b = a.send_timeout(160), b.send_timeout(160)
        for i, term in ((0, a), (1, b)):
            while queues[i]:
                term.rx_ifp(queues[i].pop(0), seq[i])
                seq[i] += 1
        if done_a and done_b:
            return
    raise AssertionError("the terminals never finished")


def pair(tmp_path: Path) -> tuple[spandsp.T38Terminal, spandsp.T38Terminal, dict[int, list[bytes]]]:
    queues: dict[int, list[bytes]] = {0: [], 1: []}
    a = spandsp.T38Terminal(True, lambda ifp, n: queues[1].extend([ifp] * n), "unit-a")
    b = spandsp.T38Terminal(False, lambda ifp, n: queues[0].extend([ifp] * n), "unit-b")
    a.t30.set_tx_file(make_tiff(tmp_path / "s.tiff", 1))
    b.t30.set_rx_file(tmp_path / "r.tiff")
    return a, b, queues


def test_terminals_fax_in_memory_and_report(tmp_path: Path) -> None:
    a, b, queues = pair(tmp_path)
    codes: list[tuple[str, int]] = []
    a.t30.set_tx_ident("SENDER")
    b.t30.set_tx_ident("RECEIVER")
    a.t30.set_phase_e_handler(lambda code: codes.append(("a", code)))
    b.t30.set_phase_e_handler(lambda code: codes.append(("b", code)))
    drive(a, b, queues)

    assert sorted(codes) == [("a", 0), ("b", 0)]
    assert a.t30.rx_ident() == "RECEIVER"
    assert b.t30.rx_ident() == "SENDER"
    stats = b.t30.stats()
    assert (stats.pages_rx, stats.width) == (1, 1728)
    a.close()
    b.close()
    a.close()  # idempotent


def test_spandsp_logs_go_to_python_logging_with_the_tag(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="fax.t38.spandsp"):
        a, b, queues = pair(tmp_path)  # the C level follows the logger's level at creation
        drive(a, b, queues)
    lines = [r.getMessage() for r in caplog.records if r.name == "fax.t38.spandsp"]
    assert any("unit-a" in line and "T.30" in line for line in lines)
    assert any("unit-b" in line and "DCS" in line for line in lines)
    a.close()
    b.close()


def test_callback_exception_is_raised_after_the_c_call(tmp_path: Path) -> None:
    def boom(_ifp: bytes, _count: int) -> None:
        raise RuntimeError("socket gone")

    terminal = spandsp.T38Terminal(True, boom, "boom")
    with pytest.raises(RuntimeError, match="socket gone"):
        for _ in range(100):
            terminal.send_timeout(160)
    terminal.close()


def test_phase_e_on_terminate_and_strings_are_checked(tmp_path: Path) -> None:
    fax = spandsp.AudioFax(True, "audio")
    with pytest.raises(ValueError, match="20"):
        fax.t30.set_tx_ident("x" * 21)
    with pytest.raises(ValueError, match="50"):
        fax.t30.set_tx_page_header_info("x" * 51)
    fax.t30.set_rx_file(tmp_path / "r.tiff")
    codes: list[int] = []
    fax.t30.set_phase_e_handler(codes.append)
    assert len(fax.tx(160)) == 320
    fax.rx(bytes(320))
    fax.rx_fillin(160)
    assert fax.t30.call_active()
    fax.terminate()
    assert codes == [spandsp.T30_ERR_CALLDROPPED]
    fax.close()
    assert fax.tx(10) == bytes(20)  # closed: silence, no crash


def test_forgotten_states_are_collected_and_freed() -> None:
    """Nothing the binding keeps for C forms an uncollectable cycle; __del__ frees."""
    refs = []
    for _ in range(20):
        refs.append(weakref.ref(spandsp.T38Terminal(False, lambda ifp, n: None, "gc")))
        refs.append(weakref.ref(spandsp.AudioFax(False, "gc")))
    gc.collect()
    assert all(ref() is None for ref in refs)
