"""Inbound concatenation: any order, redeliveries, timeouts, late parts; stable ids."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.smpp.content import Received
from connectors.smpp.reassembly import GAP, InboundIds, Reassembler
from connectors.smpp.udh import Concat

A, B = "+4917612345678", "+4915112345671"
WALL = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def part(text: str, seq: int, total: int = 3, ref: int = 7, source: str = A) -> Received:
    return Received(source, B, text, Concat(ref, total, seq), 0)


def test_out_of_order() -> None:
    r = Reassembler(timeout=60, remember=600)
    assert r.add(part("C", 3), 0) is None
    assert r.add(part("A", 1), 1) is None
    whole = r.add(part("B", 2), 2)
    assert whole is not None and whole.text == "ABC" and whole.segments == 3
    assert whole.missing == [] and whole.key == (A, B, 7, 3)
    r.done(whole.key, 2)
    assert len(r) == 0


def test_sets_are_kept_apart() -> None:
    r = Reassembler(timeout=60, remember=600)
    assert r.add(part("x1", 1, ref=1), 0) is None
    assert r.add(part("y1", 1, ref=2), 0) is None
    assert r.add(part("z1", 1, ref=1, source="+4917600000000"), 0) is None
    whole = r.add(part("y2", 2, ref=2, total=2), 0)
    assert whole is None  # total differs: another message
    assert len(r) == 4


def test_not_done_keeps_the_parts_for_a_redelivery() -> None:
    r = Reassembler(timeout=60, remember=600)
    r.add(part("A", 1, total=2), 0)
    assert r.add(part("B", 2, total=2), 0) is not None
    # The gateway failed to store it: the SMSC sends part 2 again.
    again = r.add(part("B", 2, total=2), 1)
    assert again is not None and again.text == "AB"
    r.done(again.key, 1)
    assert r.add(part("B", 2, total=2), 2) is None  # a later duplicate is ignored


def test_timeout_delivers_what_arrived_and_late_part_alone() -> None:
    r = Reassembler(timeout=60, remember=600)
    r.add(part("A", 1), 0)
    r.add(part("C", 3), 10)
    assert r.expired(59) == []
    [partial] = r.expired(60)
    assert partial.text == f"A{GAP}C" and partial.missing == [2]
    r.done(partial.key, 60)
    late = r.add(part("B", 2), 70)
    assert late is not None and late.text == "B" and late.late_part == 2 and late.key is None
    assert r.add(part("C", 3), 71) is None  # already delivered


def test_single_part_passes_through() -> None:
    r = Reassembler(timeout=60, remember=600)
    whole = r.add(Received(A, B, "hi", None, 0), 0)
    assert whole is not None and whole.text == "hi" and whole.segments == 1


def test_ids_are_stable_for_a_redelivery() -> None:
    ids = InboundIds(window=600)
    r = Reassembler(timeout=60, remember=600)
    a = r.add(Received(A, B, "hi", None, 0), 0)
    assert a is not None
    first = ids.carrier_id(a, 0, WALL)
    assert ids.carrier_id(a, 300, WALL) == first  # redelivered within the window
    # After a restart (no memory) within the same time bucket: the same id.
    assert InboundIds(600).carrier_id(a, 0, WALL) == first
    b = r.add(Received(A, B, "hi!", None, 0), 0)
    assert b is not None and ids.carrier_id(b, 0, WALL) != first
    later = ids.carrier_id(a, 700, datetime(2026, 3, 15, 12, 11, tzinfo=UTC))
    assert later != first  # outside the window: a new message


def test_window_zero_gives_every_message_its_own_id() -> None:
    ids = InboundIds(window=0)
    a = Reassembler(60, 60).add(Received(A, B, "hi", None, 0), 0)
    assert a is not None
    assert ids.carrier_id(a, 0, WALL) != ids.carrier_id(a, 0, WALL)
