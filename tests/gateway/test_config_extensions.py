"""Extensions' sections of the configuration: each installed extension parses its own
``[name]`` table into ``Settings.extensions[name]``; a section nobody owns is an error.

A stand-in extension ("portal") is installed for these tests in place of the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from gateway import config
from gateway.config import Settings, extension_settings, parse_settings, typed
from gateway.errors import ConfigError


@dataclass(frozen=True)
class PortalSettings:
    title: str = "Inbox"
    sessions_hours: int = 12


class Portal:
    name = "portal"

    def __init__(self) -> None:
        self.seen: list[Mapping[str, Any] | None] = []

    def parse_settings(self, table: Mapping[str, Any] | None) -> PortalSettings:
        self.seen.append(table)
        if table is None:
            return PortalSettings()
        values = dict(table)
        for key in values:
            if key not in ("title", "sessions_hours"):
                raise ConfigError(f"portal.{key}: unknown key")
        if "sessions_hours" in values:
            typed(values, "sessions_hours", int, "portal")
        return PortalSettings(**values)


@pytest.fixture
def portal(monkeypatch: pytest.MonkeyPatch) -> Portal:
    """The stand-in, installed as the only extension."""
    ext = Portal()
    monkeypatch.setattr(config, "_installed", lambda: {ext.name: ext})
    return ext


def test_the_section_goes_to_its_extension(portal: Portal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_TITLE", "Team inbox")
    settings = parse_settings({"portal": {"title": "${PORTAL_TITLE}", "sessions_hours": 8}})
    assert portal.seen == [{"title": "Team inbox", "sessions_hours": 8}]  # interpolated
    assert settings.extension("portal", PortalSettings) == PortalSettings("Team inbox", 8)


def test_an_absent_section_gets_the_defaults(portal: Portal) -> None:
    assert parse_settings({}).extensions == {"portal": PortalSettings()}
    assert Settings().extension("portal", PortalSettings) == PortalSettings()
    assert portal.seen == [None, None]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"portal": {"colour": "blue"}}, "portal.colour: unknown key"),
        ({"portal": {"sessions_hours": "8"}}, "portal.sessions_hours: expected int, got '8'"),
        ({"portal": ["not", "a", "table"]}, "portal: expected a table"),
        ({"webhooks": {}}, "webhooks: unknown section"),  # not installed here
    ],
)
def test_errors_name_the_key(portal: Portal, data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_settings(data)
    assert str(exc.value) == message


def test_an_unknown_section_is_refused_before_anything_is_parsed(portal: Portal) -> None:
    with pytest.raises(ConfigError, match="surprise: unknown section"):
        parse_settings({"portal": {"colour": "blue"}, "surprise": {}})
    assert portal.seen == []


def test_overrides_by_section_name(portal: Portal) -> None:
    settings = Settings(extensions=extension_settings({"portal": {"title": "Demo"}}))
    assert settings.extension("portal", PortalSettings).title == "Demo"
    with pytest.raises(ConfigError, match="nothing: unknown section"):
        extension_settings({"nothing": {}})
    changed = settings.with_extension("portal", PortalSettings(sessions_hours=1))
    assert changed.extension("portal", PortalSettings).sessions_hours == 1
    assert settings.extension("portal", PortalSettings).sessions_hours == 12  # unchanged


def test_reading_settings_of_another_type_or_a_missing_extension_fails(portal: Portal) -> None:
    settings = parse_settings({})
    with pytest.raises(LookupError, match=r"'portal'.*not dict"):
        settings.extension("portal", dict)
    with pytest.raises(LookupError, match=r"'webhooks'.*installed"):
        settings.extension("webhooks", PortalSettings)
