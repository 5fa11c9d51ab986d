"""``[portal]``: sessions, sign-in throttling, invitations, live updates and templates.

Every key is optional::

    [portal]
    enabled = true                 # false: the portal serves nothing
    session_idle_hours = 12        # a session unused this long ends
    session_days = 30              # … and every session ends after this
    signin_window_minutes = 15     # failed sign-ins are counted over this window …
    signin_account_limit = 5       # … at most this many per account
    signin_address_limit = 20      # … and per client address
    invite_hours = 72              # an invitation link is valid this long
    poll_interval = 1.0            # the longest wait between looks at the event log (new
                                   # events wake the live tail at once)
    heartbeat_seconds = 15         # a comment line on quiet event streams
    page_size = 50                 # conversations and messages per page
    [[portal.templates]]           # WhatsApp templates offered once a window is closed
    name = "appointment_reminder"
    language = "de"
    label = "Terminerinnerung"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError

_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$")


@dataclass(frozen=True, slots=True)
class TemplateOffer:
    """An approved WhatsApp template the composer offers (no parameters)."""

    name: str
    language: str
    label: str


@dataclass(frozen=True, slots=True)
class PortalSettings:
    """The ``[portal]`` section."""

    enabled: bool = True
    session_idle_hours: float = 12.0
    session_days: float = 30.0
    signin_window_minutes: int = 15
    signin_account_limit: int = 5
    signin_address_limit: int = 20
    invite_hours: float = 72.0
    poll_interval: float = 1.0
    heartbeat_seconds: float = 15.0
    page_size: int = 50
    templates: tuple[TemplateOffer, ...] = ()


_NUMBERS: dict[str, tuple[type, float, float]] = {
    "session_idle_hours": (float, 0.01, 24 * 365),
    "session_days": (float, 0.01, 3650),
    "signin_window_minutes": (int, 1, 24 * 60),
    "signin_account_limit": (int, 1, 1000),
    "signin_address_limit": (int, 1, 100_000),
    "invite_hours": (float, 0.1, 24 * 90),
    "poll_interval": (float, 0.001, 10),
    "heartbeat_seconds": (float, 1, 300),
    "page_size": (int, 5, 200),
}


def _templates(value: Any) -> tuple[TemplateOffer, ...]:
    if not isinstance(value, list):
        raise ConfigError("portal.templates: expected an array of tables ([[portal.templates]])")
    out = []
    for i, item in enumerate(value):
        where = f"portal.templates[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a table")
        unknown = sorted(set(item) - {"name", "language", "label"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown key")
        name, language = item.get("name"), item.get("language")
        if not isinstance(name, str) or not _TEMPLATE_NAME.match(name):
            raise ConfigError(f"{where}.name: the approved template's name (a-z, 0-9, _)")
        if not isinstance(language, str) or not _LANGUAGE.match(language):
            raise ConfigError(f'{where}.language: a language code such as "de" or "en_US"')
        label = item.get("label", name)
        if not isinstance(label, str) or not label.strip():
            raise ConfigError(f"{where}.label: expected a non-empty string")
        out.append(TemplateOffer(name, language, label.strip()))
    return tuple(out)


def parse_settings(table: Mapping[str, Any] | None) -> PortalSettings:
    """``[portal]`` (None when absent: the defaults); errors name the key."""
    if table is None:
        return PortalSettings()
    if not isinstance(table, Mapping):
        raise ConfigError("portal: expected a table")
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"portal.{key}"
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            values[key] = value
        elif key == "templates":
            values[key] = _templates(value)
        elif key in _NUMBERS:
            kind, low, high = _NUMBERS[key]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if kind is int and not isinstance(value, int):
                ok = False
            if not ok:
                raise ConfigError(f"{where}: expected a {kind.__name__}, got {value!r}")
            if not low <= value <= high:
                raise ConfigError(f"{where}: must be from {low:g} to {high:g}, got {value!r}")
            values[key] = kind(value)
        else:
            raise ConfigError(f"{where}: unknown key")
    return PortalSettings(**values)
