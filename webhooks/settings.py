"""``[webhooks]``: the webhooks' section of the configuration file.

The core hands the section to ``WebhooksExtension.parse_settings`` (``extension.py``), which
parses it here; the result is ``Settings.extensions["webhooks"]``, read back typed with
:func:`webhook_settings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import Settings, typed
from gateway.errors import ConfigError

SECTION = "webhooks"
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """``[webhooks]``: delivery of events to the teams' webhook endpoints."""

    # Seconds before each attempt: the first entry is the first attempt (after the event),
    # the others the retries after a failed attempt; after the last one a delivery fails.
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    # Deliver to private, loopback, link-local … addresses too (tests, the demo).
    allow_private_targets: bool = False
    timeout: float = 15.0  # seconds for one attempt: connect, send, status and headers
    concurrency: int = 100  # attempts in flight per process
    # Seconds between looks for due retries while busy (idle: backing off to 0.5 s); the
    # event log is followed through the store's announcements (Store.event_waiter).
    poll_interval: float = 0.02
    lease_seconds: float = 60.0  # an attempt whose process died is taken over after this
    disable_after_seconds: float = 5 * 86400.0  # failing this long without a success: disabled
    # How far back a replay may reach: it scans the shared event log from ``since`` on, so
    # an unbounded ``since`` would make the server read every team's events ever kept.
    replay_max_age_seconds: float = 30 * 86400.0


_NUMBERS: dict[str, tuple[float, float | None]] = {
    "timeout": (0.001, 3600.0),
    "poll_interval": (0.001, 60.0),
    "lease_seconds": (0.001, None),
    "disable_after_seconds": (1.0, None),
    "replay_max_age_seconds": (60.0, 366 * 86400.0),
}


def parse(table: Mapping[str, Any] | None) -> WebhookSettings:
    """The ``[webhooks]`` table (None: absent, the defaults); errors name the key."""
    if table is None:
        return WebhookSettings()
    section = dict(table)
    values: dict[str, Any] = {}
    for key, value in section.items():
        where = f"{SECTION}.{key}"
        if key == "retry_schedule":
            if (
                not isinstance(value, list)
                or not 1 <= len(value) <= 30
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 604800
                    for v in value
                )
            ):
                raise ConfigError(
                    f"{where}: expected a list of 1 to 30 delays in seconds (0 to 604800), "
                    f"got {value!r}"
                )
            values[key] = tuple(float(v) for v in value)
        elif key == "allow_private_targets":
            values[key] = typed(section, key, bool, SECTION)
        elif key == "concurrency":
            values[key] = typed(section, key, int, SECTION)
            if not 1 <= values[key] <= 10000:
                raise ConfigError(f"{where}: must be from 1 to 10000")
        elif key in _NUMBERS:
            low, high = _NUMBERS[key]
            values[key] = float(typed(section, key, (int, float), SECTION))
            if values[key] < low or (high is not None and values[key] > high):
                bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
                raise ConfigError(f"{where}: must be {bound}, got {value!r}")
        else:
            raise ConfigError(f"{where}: unknown key")
    settings = WebhookSettings(**values)
    if settings.lease_seconds <= settings.timeout:
        raise ConfigError(
            f"{SECTION}.lease_seconds: must be longer than {SECTION}.timeout "
            f"({settings.timeout:g} s), got {settings.lease_seconds:g}"
        )
    return settings


def webhook_settings(settings: Settings) -> WebhookSettings:
    """The ``[webhooks]`` settings of a process (``Settings.extensions["webhooks"]``)."""
    return settings.extension(SECTION, WebhookSettings)
