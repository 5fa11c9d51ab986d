"""The [webhooks] section of the configuration: parsed by the extension through the core."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import Settings, parse_settings
from gateway.errors import ConfigError
from webhooks.extension import EXTENSION
from webhooks.settings import DEFAULT_RETRY_SCHEDULE, WebhookSettings, webhook_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    hooks = webhook_settings(parse_settings({}))
    assert hooks == WebhookSettings() == webhook_settings(Settings())
    assert EXTENSION.parse_settings(None) == WebhookSettings()
    assert hooks.retry_schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert hooks.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert not hooks.allow_private_targets
    assert (hooks.timeout, hooks.lease_seconds, hooks.disable_after_seconds) == (15, 60, 432000)


def test_values() -> None:
    hooks = webhook_settings(
        parse_settings(
            {
                "webhooks": {
                    "retry_schedule": [0, 1.5, 60],
                    "allow_private_targets": True,
                    "timeout": 2,
                    "concurrency": 8,
                    "poll_interval": 0.01,
                    "lease_seconds": 5,
                    "disable_after_seconds": 3600,
                }
            }
        )
    )
    assert hooks.retry_schedule == (0.0, 1.5, 60.0) and hooks.allow_private_targets
    assert (hooks.timeout, hooks.concurrency, hooks.poll_interval) == (2.0, 8, 0.01)
    assert (hooks.lease_seconds, hooks.disable_after_seconds) == (5.0, 3600.0)


def test_the_example_file_is_the_default() -> None:
    data = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert webhook_settings(parse_settings({"webhooks": data["webhooks"]})) == WebhookSettings()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"retry_schedule": []}, "webhooks.retry_schedule: expected a list of 1 to 30"),
        ({"retry_schedule": [0, -5]}, "webhooks.retry_schedule"),
        ({"retry_schedule": "0,5"}, "webhooks.retry_schedule"),
        ({"retry_schedule": [0, True]}, "webhooks.retry_schedule"),
        ({"allow_private_targets": "yes"}, "webhooks.allow_private_targets: expected bool"),
        ({"timeout": 0}, "webhooks.timeout: must be from"),
        ({"timeout": "fast"}, "webhooks.timeout: expected"),
        ({"concurrency": 0}, "webhooks.concurrency: must be from 1 to 10000"),
        ({"concurrency": 2.5}, "webhooks.concurrency: expected int"),
        ({"timeout": 30, "lease_seconds": 20}, "webhooks.lease_seconds: must be longer than"),
        ({"disable_after_seconds": 0}, "webhooks.disable_after_seconds: must be at least"),
        ({"retries": 3}, "webhooks.retries: unknown key"),
    ],
)
def test_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings({"webhooks": table})


def test_section_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match="webhooks: expected a table"):
        parse_settings({"webhooks": [1]})


def test_the_section_reaches_the_extension_after_interpolation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_PRIVATE_TEST", "yes")
    with pytest.raises(ConfigError, match=r"webhooks\.allow_private_targets: expected bool"):
        parse_settings({"webhooks": {"allow_private_targets": "${HOOK_PRIVATE_TEST}"}})
