"""German and English: the catalogues, the choice of language, dates and numbers.

Messages are written in English in the templates and the code; German comes from the
Babel catalogue ``locale/de/LC_MESSAGES/portal.po`` (read at start-up, plural forms
included). The language is the one the member picked (a cookie), else German when the
browser asks for German before English, else English.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALES = ("de", "en")
DEFAULT = "en"
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "portal"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalogue of ``lang`` (English is the source language: no catalogue)."""
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if lang == DEFAULT or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def negotiate(accept_language: str | None, chosen: str | None) -> str:
    """The language of a request: ``chosen`` (cookie) if known, else the browser's first
    supported preference, else English."""
    if chosen in LOCALES:
        return str(chosen)
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().lower().split("-")[0]
        if lang not in LOCALES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -i) > (best[0], best[1])):
            best = (q, -i, lang)
    return best[2] if best else DEFAULT


_current: ContextVar[gettext.NullTranslations | None] = ContextVar(
    "portal_translations", default=None
)
_SOURCE = gettext.NullTranslations()


def activate(lang: str) -> None:
    """Use ``lang`` for the rest of this request (templates and code)."""
    _current.set(translations(lang))


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Use ``lang`` inside the block only: work outside a request (a job's mail)."""
    token = _current.set(translations(lang if lang in LOCALES else DEFAULT))
    try:
        yield
    finally:
        _current.reset(token)


def _(message: str) -> str:
    """``message`` in the request's language."""
    return (_current.get() or _SOURCE).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the request's language."""
    return (_current.get() or _SOURCE).ngettext(singular, plural, n)


def gettext_callables() -> tuple[Callable[[str], str], Callable[[str, str, int], str]]:
    """What Jinja's i18n extension calls (they follow :func:`activate`)."""
    return _, ngettext


@dataclass(slots=True, frozen=True)
class Formats:
    """Dates, times and numbers of one language in one time zone."""

    lang: str
    tz: ZoneInfo

    @property
    def locale(self) -> Locale:
        """The Babel locale (de_DE or en_GB: 24-hour clocks in both)."""
        return Locale.parse("de_DE" if self.lang == "de" else "en_GB")

    def time(self, at: dt.datetime) -> str:
        """``14:32``."""
        return format_time(at, "HH:mm", tzinfo=self.tz, locale=self.locale)

    def datetime(self, at: dt.datetime) -> str:
        """Date and time, medium length."""
        return format_datetime(at, "medium", tzinfo=self.tz, locale=self.locale)

    def day(self, at: dt.datetime) -> str:
        """The date, medium length."""
        return format_date(at.astimezone(self.tz), "medium", locale=self.locale)

    def month(self, period: str) -> str:
        """``2026-03`` → ``Mar 2026`` / ``März 2026``."""
        year, month = int(period[:4]), int(period[5:7])
        return format_date(dt.date(year, month, 1), "MMM y", locale=self.locale)

    def relative(self, at: dt.datetime, now: dt.datetime) -> str:
        """``5 minutes ago`` / ``vor 5 Minuten``; the date once it is more than a week."""
        delta = at - now
        if abs(delta.total_seconds()) < 45:
            return _("just now")
        if abs(delta.days) >= 7:
            return self.day(at)
        return format_timedelta(
            delta, add_direction=True, threshold=1.0, format="long", locale=self.locale
        )

    def number(self, n: int | float) -> str:
        """``1,234`` / ``1.234``."""
        return format_decimal(n, locale=self.locale)

    def duration(self, seconds: float) -> str:
        """``3 h 12 min`` (hours and minutes left, rounded down; at least 1 min)."""
        minutes = max(1, int(seconds // 60))
        hours, minutes = divmod(minutes, 60)
        if hours:
            return _("{h} h {m} min").format(h=hours, m=minutes)
        return _("{m} min").format(m=minutes)
