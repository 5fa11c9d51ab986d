"""Search text: folding (German umlauts, case, accents) and the number forms a member types.

Both sides are folded the same way, so "Müller", "Mueller" and "MUELLER" find each other:
ä → ae, ö → oe, ü → ue, ß → ss, other accents dropped, case folded, whitespace collapsed.
A query made of digits and phone punctuation is also matched as digits against the
contact's number in E.164 (``4915112345678``) and national (``015112345678``) form.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers

_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss"})
_SPACE = re.compile(r"\s+")
_PHONEISH = re.compile(r"^[\d\s()+/.\-]{3,}$")


def fold(text: str) -> str:
    """``text`` folded for matching (see the module docstring)."""
    text = text.lower().translate(_GERMAN)
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub(" ", stripped.casefold().translate(_GERMAN)).strip()


def fold_query(query: str) -> str | None:
    """A search box's text as the index matches it; None when there is nothing to match.
    Phone-like input becomes its digits (``0151 123-45`` → ``015112345``)."""
    query = query.strip()
    if not query:
        return None
    if _PHONEISH.match(query):
        digits = re.sub(r"\D", "", query)
        if digits.startswith("00"):
            digits = digits[2:]
        if len(digits) >= 3:
            return digits
    folded = fold(query)
    return folded or None


@lru_cache(maxsize=4096)
def number_forms(e164: str) -> str:
    """The digits of ``e164`` in international and national form, space separated."""
    digits = e164.lstrip("+")
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return digits
    national = re.sub(
        r"\D", "", phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    )
    return f"{digits} {national}" if national and national != digits else digits


def head(remote_number: str, contact_name: str | None) -> str:
    """The folded name and number forms of a conversation's contact."""
    parts = [number_forms(remote_number)]
    if contact_name:
        parts.insert(0, fold(contact_name))
    return " ".join(parts)
