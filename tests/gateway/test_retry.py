"""gateway/retry.py: the one backoff, the one Retry-After parser, tenacity for in-process
retries (the schedule declared, the sleep injected and recorded)."""

from __future__ import annotations

import email.utils
import logging
from datetime import UTC, datetime, timedelta

import pytest

from gateway.retry import (
    FAILING_WAIT_MAX,
    MAX_RETRY_AFTER,
    Failing,
    backoff,
    in_process,
    retry_after_seconds,
)

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


def test_backoff_without_jitter_is_the_schedule() -> None:
    delays = [backoff(n, base=5, cap=3600, rand=lambda: 0.0) for n in range(1, 9)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 640]
    fours = [backoff(n, base=5, cap=3600, factor=4, rand=lambda: 0.0) for n in range(1, 7)]
    assert fours == [5, 20, 80, 320, 1280, 3600]  # capped
    assert backoff(0, base=5, cap=60, rand=lambda: 0.0) == 5  # before any attempt: the base


def test_jitter_only_shortens_and_stays_within_its_share() -> None:
    assert backoff(1, base=10, cap=60, jitter=0.2, rand=lambda: 0.999) == pytest.approx(8.002)
    assert backoff(9, base=10, cap=60, jitter=0.2, rand=lambda: 0.5) == 54.0  # spread at the cap
    seen = {backoff(3, base=5, cap=3600) for _ in range(200)}
    assert all(16.0 <= d <= 20.0 for d in seen)  # 20 s less at most 20 %
    assert len(seen) > 100  # spread, not one value: jobs that failed together come apart


def test_backoff_after_thousands_of_attempts_is_the_cap() -> None:
    assert backoff(5000, base=5, cap=3600, jitter=0) == 3600


def http_date(at: datetime) -> str:
    return email.utils.format_datetime(at, usegmt=True)


def test_retry_after_delta_seconds_and_dates() -> None:
    assert retry_after_seconds("5", NOW) == 5.0
    assert retry_after_seconds(" 120 ", NOW) == 120.0
    assert retry_after_seconds("0", NOW) == 0.0
    assert retry_after_seconds(http_date(NOW + timedelta(minutes=2)), NOW) == 120.0
    assert retry_after_seconds(http_date(NOW - timedelta(minutes=2)), NOW) == 0.0
    assert retry_after_seconds("Sun, 15 Mar 2026 12:00:10", NOW) == 10.0  # no zone: GMT


def test_retry_after_is_bounded() -> None:
    """A wait of 400 digits does not fit a float (it raised OverflowError), and one far in
    the future would overflow a timedelta: both read as the longest wait, a week."""
    assert retry_after_seconds("9" * 400, NOW) == MAX_RETRY_AFTER == 7 * 86_400.0
    assert retry_after_seconds("100000000000000", NOW) == MAX_RETRY_AFTER
    assert retry_after_seconds(str(7 * 86_400 + 1), NOW) == MAX_RETRY_AFTER
    assert retry_after_seconds(str(7 * 86_400), NOW) == MAX_RETRY_AFTER
    assert retry_after_seconds(http_date(NOW + timedelta(days=400)), NOW) == MAX_RETRY_AFTER
    timedelta(seconds=MAX_RETRY_AFTER)  # what the dispatcher makes of it


@pytest.mark.parametrize(
    "bad", [None, "", "soon", "-5", "inf", "1e3", "1.5", " 1.5 ", "2.0", "٣", "5 s"]
)
def test_retry_after_malformed_is_none(bad: str | None) -> None:
    """RFC 9110: delta-seconds is 1*DIGIT. A fractional value ("1.5", which one copy read
    as 1.5 s and the other ignored) is neither delta-seconds nor a date: malformed, None,
    so the caller keeps its own backoff. Digits other than ASCII are not DIGIT either."""
    assert retry_after_seconds(bad, NOW) is None


class Flaky(Exception):
    """A failure worth another try."""

    def __init__(self, hint: float | None = None) -> None:
        super().__init__("flaky")
        self.hint = hint


async def test_in_process_retries_with_the_backoff_and_the_hint() -> None:
    slept: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Flaky()
        if calls == 2:
            raise Flaky(hint=3.0)  # the server asks for longer than the backoff
        return "ok"

    retrying = in_process(
        attempts=3,
        base=0.2,
        cap=2.0,
        retry_on=lambda exc: isinstance(exc, Flaky),
        hint=lambda exc: exc.hint if isinstance(exc, Flaky) else None,
        jitter=0.0,
        sleep=sleep,
    )
    assert await retrying(call) == "ok"
    assert (calls, slept) == (3, [0.2, 3.0])


async def test_in_process_gives_up_with_the_last_error_and_skips_others() -> None:
    slept: list[float] = []
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def always() -> None:
        raise Flaky()

    retrying = in_process(
        attempts=3,
        base=1.0,
        cap=10.0,
        retry_on=lambda exc: isinstance(exc, Flaky),
        on_wait=waits.append,
        jitter=0.0,
        sleep=sleep,
    )
    with pytest.raises(Flaky):
        await retrying(always)
    assert slept == waits == [1.0, 2.0]

    async def broken() -> None:
        raise KeyError("not a retry case")

    slept.clear()
    retrying = in_process(
        attempts=3, base=1.0, cap=10.0, retry_on=lambda e: isinstance(e, Flaky), sleep=sleep
    )
    with pytest.raises(KeyError):
        await retrying(broken)
    assert slept == []


async def test_in_process_without_a_limit_goes_on_until_it_succeeds() -> None:
    slept: list[float] = []
    calls = 0

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def call() -> int:
        nonlocal calls
        calls += 1
        if calls < 10:
            raise Flaky()
        return calls

    retrying = in_process(
        attempts=None,
        base=0.5,
        cap=30.0,
        retry_on=lambda exc: isinstance(exc, Flaky),
        jitter=0.0,
        sleep=sleep,
    )
    assert await retrying(call) == 10
    assert slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


async def test_in_process_gives_up_when_told_before_a_wait() -> None:
    """``give_up`` sees each wait before it starts (e.g. would it outlast a lease?) and
    stops the tries there, with the last error."""
    slept: list[float] = []
    asked: list[float] = []
    budget = 3.5  # seconds the caller may still spend

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def always() -> None:
        raise Flaky()

    def give_up(seconds: float) -> bool:
        asked.append(seconds)
        return sum(slept) + seconds > budget

    retrying = in_process(
        attempts=None,
        base=1.0,
        cap=10.0,
        retry_on=lambda exc: isinstance(exc, Flaky),
        give_up=give_up,
        jitter=0.0,
        sleep=sleep,
    )
    with pytest.raises(Flaky):
        await retrying(always)
    assert asked == [1.0, 2.0, 4.0] and slept == [1.0, 2.0]


def test_failing_backs_off_to_its_cap_and_logs_one_traceback_per_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("gateway.test")
    failing = Failing("fan-out", 0.02, log, rand=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="gateway.test"):
        waits = [failing.failed(ConnectionError("refused")) for _ in range(10)]
        failing.ok()
        again = failing.failed(ConnectionError("refused"))
    assert waits == [min(0.02 * 2**n, FAILING_WAIT_MAX) for n in range(10)]
    assert waits[-1] == FAILING_WAIT_MAX == 2.0
    assert again == 0.02
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2  # the first failure of each run, not every one
    one_line = [r.getMessage() for r in caplog.records if not r.exc_info]
    assert sum("failed again" in m for m in one_line) == 9
    assert any("works again after 10 failures" in m for m in one_line)
    # The jitter only shortens a wait: a loop never waits past the cap.
    jittered = Failing("fan-out", 0.02, log, rand=lambda: 0.999)
    assert all(0 < jittered.failed(ConnectionError("refused")) <= 2.0 for _ in range(12))
