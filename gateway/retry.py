"""Retries in one place: the durable retry of a job, the one backoff formula, the one
``Retry-After`` parser, and tenacity for the short retries that stay inside a call.

Public: connectors, fax and extensions import this module (it imports nothing of theirs).

Two kinds of retry, never mixed:

- **durable** (seconds to hours): a job handler raises :class:`Retry`; the job goes back
  to the queue with a later ``run_at`` and no coroutine sleeps meanwhile. Its delay is
  :func:`backoff` (or a carrier's ``Retry-After``, whichever is later);
- **in-process** (a hiccup of a second): :func:`in_process` builds a tenacity
  ``AsyncRetrying`` with the same backoff as its wait, an injectable ``sleep`` and an
  optional server hint (``hint``), so that the schedule is declared, not hand-looped.

And for the steps of a background loop (leasing jobs, webhook fan-out) that fail while the
store is down, :class:`Failing`: the same backoff to a short cap, one traceback per outage.

Every backoff carries jitter: many jobs that failed together (a carrier outage) must not
all come back in the same second.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
)

# The share of a delay that jitter may take off (never adds: a schedule is a promise
# that nothing is tried *earlier* than ``base * factor**n`` less this share).
JITTER = 0.2
# The longest wait between tries of a loop step that keeps failing (:class:`Failing`).
FAILING_WAIT_MAX = 2.0
# RFC 9110 §10.2.3: ``Retry-After = HTTP-date / delay-seconds``, ``delay-seconds = 1*DIGIT``.
_DELAY_SECONDS = re.compile(r"[0-9]+")


@dataclass(slots=True)
class Retry(Exception):
    """Raised by a job handler: run the job again at ``at`` (an attempt is used unless
    ``refund``, for a job that waited on something outside it, e.g. a connector without
    credentials)."""

    at: datetime
    reason: str
    refund: bool = False


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float = 2.0,
    jitter: float = JITTER,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempt``-th failure (1 = the first): ``base *
    factor**(attempt-1)``, at most ``cap``, less a random share of up to ``jitter``.

    The jitter only shortens the delay, so the cap holds and nothing waits longer than the
    schedule says; ``rand`` (uniform in [0, 1)) is injectable for exact tests.
    """
    try:
        delay = min(cap, base * factor ** max(0, attempt - 1))
    except OverflowError:  # thousands of attempts: long past the cap
        delay = cap
    return delay * (1.0 - jitter * rand())


# The longest wait a Retry-After can ask for (seconds); longer values are read as this.
MAX_RETRY_AFTER = 7 * 86_400.0


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``; None when absent or malformed.

    RFC 9110: delta-seconds (a non-negative integer) or an HTTP date (a date without a
    zone is read as GMT; a date in the past gives 0). A fractional value such as ``1.5``
    is neither, so it is malformed and gives None: the caller then keeps its own backoff.
    A wait longer than ``MAX_RETRY_AFTER`` is read as that.
    """
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        # Bounded: 400 digits would not even fit a float, and no carrier's wait is worth
        # more than a week of a job's life (a webhook endpoint is disabled after 5 days).
        return float(min(int(value), MAX_RETRY_AFTER)) if len(value) < 16 else MAX_RETRY_AFTER
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def in_process(
    *,
    attempts: int | None,
    base: float,
    cap: float,
    retry_on: Callable[[BaseException], bool],
    hint: Callable[[BaseException], float | None] | None = None,
    on_wait: Callable[[float], object] | None = None,
    give_up: Callable[[float], bool] | None = None,
    jitter: float = JITTER,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncRetrying:
    """A tenacity retrier for an in-process retry: up to ``attempts`` tries (None: until
    one succeeds) of a call whose error satisfies ``retry_on``, waiting :func:`backoff`
    between them, or the error's own ``hint`` in seconds when longer; ``on_wait(seconds)``
    hears of each wait before it starts, and ``give_up(seconds)`` may stop the tries
    before such a wait (True: the time is up). The last error is re-raised.

    Build one per call (tenacity keeps the state of a run in it). A hot path tries its
    call once by itself first and hands over to this only when that failed (see
    ``gateway.dispatch``): the success path then builds nothing.
    """

    def wait(state: RetryCallState) -> float:
        delay = backoff(state.attempt_number, base=base, cap=cap, jitter=jitter)
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        wanted = hint(error) if hint is not None and error is not None else None
        return max(delay, wanted or 0.0)

    def stop(state: RetryCallState) -> bool:
        if attempts is not None and state.attempt_number >= attempts:
            return True
        return give_up is not None and give_up(state.upcoming_sleep)

    def before_sleep(state: RetryCallState) -> None:
        if on_wait is not None and state.next_action is not None:
            on_wait(state.next_action.sleep)

    return AsyncRetrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(retry_on),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


class Failing:
    """A background loop's step that keeps failing (the store is down): the wait before
    the next try is :func:`backoff` from the loop's ``first`` wait (its poll interval) to
    ``cap``; the first failure of a run is logged with its traceback, the next ones in one
    line, and the step working again in one line.

    Without it a loop tried again every poll interval (20 ms) and logged a traceback each
    time: a hundred tracebacks a second per loop and process while Redis was down.
    """

    def __init__(
        self,
        what: str,
        first: float,
        log: logging.Logger,
        *,
        cap: float = FAILING_WAIT_MAX,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.what = what
        self.first = first
        self.cap = cap
        self.log = log
        self.rand = rand
        self.count = 0  # failures in a row

    def failed(self, exc: BaseException) -> float:
        """Note a failure; the seconds to wait before the next try."""
        self.count += 1
        wait = backoff(self.count, base=self.first, cap=self.cap, rand=self.rand)
        if self.count == 1:
            self.log.error("%s failed; trying again", self.what, exc_info=exc)
        else:
            self.log.warning(
                "%s failed again (%d in a row: %s: %s); next try in %.2f s",
                self.what,
                self.count,
                type(exc).__name__,
                exc,
                wait,
            )
        return wait

    def ok(self) -> None:
        """The step worked: the next failure waits the shortest time again."""
        if self.count:
            self.log.info("%s works again after %d failures", self.what, self.count)
        self.count = 0
