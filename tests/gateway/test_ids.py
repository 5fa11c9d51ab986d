"""Ids: fixed format, time-sortable, monotonic within one millisecond."""

from __future__ import annotations

import re
import time

import pytest

from gateway import ids

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _reference(ms: int, rand: int) -> str:
    """The documented layout, computed the slow way: 48 bits ms + 80 bits random as
    26 Crockford base-32 symbols, most significant first."""
    value = (ms << 80) | rand
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in range(25, -1, -1))


def test_format_and_time_part() -> None:
    """``prefix_`` + 26 symbols whose first 10 decode to the current milliseconds."""
    before = time.time_ns() // 1_000_000
    ident = ids.new_id("msg")
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"msg_[0-9A-HJKMNP-TV-Z]{26}", ident)
    body = ident[4:]
    value = 0
    for ch in body:
        value = value * 32 + _ALPHABET.index(ch)
    assert before <= value >> 80 <= after


def test_matches_the_reference_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast encoding equals the symbol-by-symbol one, also within one millisecond."""
    ms = 0x123456789ABC
    rand = 0x1F2E3D4C5B6A79880706 >> 1
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids.time, "time_ns", lambda: ms * 1_000_000 + 999_999)
    monkeypatch.setattr(ids.os, "urandom", lambda n: (rand << 1).to_bytes(n, "big"))
    assert ids.new_id("evt") == "evt_" + _reference(ms, rand)
    assert ids.new_id("evt") == "evt_" + _reference(ms, rand + 1)
    # A clock that steps back keeps the last millisecond and counts on.
    monkeypatch.setattr(ids.time, "time_ns", lambda: (ms - 5) * 1_000_000)
    assert ids.new_id("evt") == "evt_" + _reference(ms, rand + 2)


def test_strictly_increasing() -> None:
    """Ids of one process sort in creation order, also many inside one millisecond."""
    made = [ids.new_id("job") for _ in range(5000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
