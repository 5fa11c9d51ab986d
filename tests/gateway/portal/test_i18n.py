"""German and English: every message has its German translation, plural forms, the
language a browser gets, dates per locale; and htmx is the locked one."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir

from gateway.portal import i18n

ROOT = Path(__file__).parents[3]
# Words German spells the same.
SAME_IN_GERMAN = {
    "URL (https)",
    "Team",
    "Fax",
    "Admin",
    "Name",
    "Status",
    "GSM-7",
    "UCS-2",
    "Webhooks",
    "Team %(name)s",
}
PORTAL = ROOT / "gateway/portal"


def source_messages() -> set[str | tuple[str, str]]:
    """Every message the templates and the code ask to translate."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    options = {"templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    out: set[str | tuple[str, str]] = set()
    for _, _, message, _, _ in extract_from_dir(
        str(PORTAL), method_map, options, keywords={"_": None, "ngettext": (1, 2)}
    ):
        out.add(message if isinstance(message, str) else (message[0], message[1]))
    return out


def test_every_message_has_a_german_translation() -> None:
    messages = source_messages()
    assert len(messages) > 150
    de = i18n.translations("de")
    missing = []
    for message in messages:
        if isinstance(message, str):
            if de.gettext(message) == message and message not in SAME_IN_GERMAN:
                missing.append(message)
        elif de.ngettext(message[0], message[1], 2) == message[1]:
            missing.append(message[0])
    assert not missing, missing


def test_german_plural_forms() -> None:
    i18n.activate("de")
    assert (
        i18n.ngettext("%(count)s unread message", "%(count)s unread messages", 1) % {"count": 1}
        == "1 ungelesene Nachricht"
    )
    assert (
        i18n.ngettext("%(count)s unread message", "%(count)s unread messages", 3) % {"count": 3}
        == "3 ungelesene Nachrichten"
    )
    i18n.activate("en")
    assert i18n.ngettext("%(count)s unit", "%(count)s units", 1) % {"count": 1} == "1 unit"


@pytest.mark.parametrize(
    ("header", "cookie", "lang"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", None, "de"),
        ("en-US,en;q=0.9,de;q=0.8", None, "en"),
        ("fr-FR,fr;q=0.9,de;q=0.5", None, "de"),
        ("fr-FR", None, "en"),
        (None, None, "en"),
        ("de", "en", "en"),
        ("en;q=0.1, de;q=0.2", None, "de"),
        ("de;q=0", None, "en"),
    ],
)
def test_negotiation(header: str | None, cookie: str | None, lang: str) -> None:
    assert i18n.negotiate(header, cookie) == lang


def test_dates_and_durations_per_locale() -> None:
    at = datetime(2026, 3, 15, 13, 32, tzinfo=UTC)
    de = i18n.Formats("de", ZoneInfo("Europe/Berlin"))
    i18n.activate("de")
    assert de.time(at) == "14:32"
    assert de.month("2026-03") == "März 2026"
    assert de.relative(at, at + timedelta(minutes=5)) == "vor 5 Minuten"
    assert de.duration(3 * 3600 + 12 * 60 + 30) == "3 Std. 12 Min."
    assert de.number(1234) == "1.234"
    en = i18n.Formats("en", ZoneInfo("Europe/Berlin"))
    i18n.activate("en")
    assert en.relative(at, at + timedelta(minutes=5)) == "5 minutes ago"
    assert en.duration(90) == "1 min"


def test_htmx_is_the_locked_release() -> None:
    lock = json.loads((PORTAL / "npm/package-lock.json").read_text())
    assert lock["packages"]["node_modules/htmx.org"]["version"] == "4.0.1"
    vendored = (PORTAL / "static/vendor/htmx.min.js").read_bytes()
    installed = PORTAL / "npm/node_modules/htmx.org/dist/htmx.min.js"
    # make installs the locked packages before the tests (npm ci checks the lock's hashes).
    assert installed.exists(), "run make (portal-assets): npm ci installs the locked htmx"
    assert hashlib.sha256(vendored).digest() == hashlib.sha256(installed.read_bytes()).digest()
    assert io.BytesIO(vendored).read(64).startswith(b"var htmx") or b"htmx" in vendored[:2000]
