"""Settings of the parsers' property tests: short and deterministic in the suite, long and
random when hunting.

In the suite every fuzz test runs a few hundred derandomized examples with no example
database, so CI sees the same inputs on every run. To hunt for crashes, run them with
``FUZZ_EXAMPLES=100000 .venv/bin/pytest -q -k fuzz tests/...``: each test then draws that
many random examples (a failure prints the input to add as a regression test).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gateway.store.base import MessageFilter

if TYPE_CHECKING:
    from gateway.runtime import Runtime

HUNT = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)


def fuzz(examples: int) -> settings:
    """``examples`` derandomized examples (``FUZZ_EXAMPLES`` random ones when set)."""
    return settings(
        max_examples=HUNT or examples,
        derandomize=not HUNT,
        database=None,
        deadline=None,  # a shared, noisy machine: time is not what these tests judge
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,  # fixtures here hold no per-example state
        ],
        print_blob=True,
    )


# -- JSON as carriers might send it -------------------------------------------------------
# Text that JSON can carry and the stores can write: no lone surrogates (a JSON parser that
# let "\ud800" through would fail at the store; that case is spliced in as raw text below).
json_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
# Strings that look like numbers to str.isdigit() but not to int(): superscripts, more than
# int()'s 4,300 digits; and some that int() reads though they are not plain digits.
numeric_strings = st.sampled_from(
    ["²", "1²", "-²", "--5", "١٢٣", " 7 ", "-1", "0", "+5", "1_0", "0x10", "1e3", ""]
) | st.integers(4290, 4400).map(lambda n: "1" * n)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
    | numeric_strings
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    """``depth`` levels of arrays (or of objects: ``{"a":`` … ``}``) around a string."""
    return open_ * depth + '"x"' + close * depth


# Raw JSON text that parsers disagree about: lone surrogates, NaN and infinities, integers
# past int()'s 4,300 digits, and nesting past the encoders' and parsers' limits (the
# standard library's recursion limit is about 1,000).
odd_json = (
    st.sampled_from(['"\\ud800"', "NaN", "-Infinity", "1e400", "1" * 5000, '"a\\u0000"'])
    | st.integers(1, 3000).map(nested)
    | st.integers(1, 1200).map(lambda d: nested(d, '{"a":', "}"))
    | st.just(nested(5_000))
)


async def read_back(rt: Runtime) -> None:
    """Every team's messages and conversations can still be read from the store (what a
    fuzzed input stored must not break the inbox)."""
    for team in await rt.store.list_teams():
        await rt.store.list_messages(MessageFilter(team.id), None, 100)
        await rt.store.list_conversations(team.id, None, None, 100)
