"""Phone numbers: everything stored is E.164; national input is read with the team's region."""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from gateway.errors import ValidationError

_MOBILE_TYPES = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


@lru_cache(maxsize=65536)
def _parse(text: str, region: str) -> tuple[str, int]:
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise ValidationError(
            f"{text!r} is not a phone number: {exc._msg}", code="invalid_number"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(f"{text!r} is not a valid phone number", code="invalid_number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, phonenumbers.number_type(parsed)


def normalize(text: str, region: str = "DE") -> str:
    """``text`` in E.164; raises ``ValidationError(code="invalid_number")`` when invalid."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("a phone number is required", code="invalid_number")
    return _parse(text.strip(), region.upper())[0]


def normalize_mobile(text: str, region: str = "DE") -> str:
    """A mobile number in E.164 (it carries SMS and WhatsApp)."""
    e164, kind = _parse(text.strip(), region.upper())
    if kind not in _MOBILE_TYPES:
        raise ValidationError(f"{text!r} is not a mobile number", code="invalid_number")
    return e164


def normalize_landline(text: str, region: str = "DE") -> str:
    """A fax-capable number in E.164 (anything valid but a mobile number)."""
    e164, kind = _parse(text.strip(), region.upper())
    if kind == PhoneNumberType.MOBILE:
        raise ValidationError(
            f"{text!r} is a mobile number; fax needs a landline number", code="invalid_number"
        )
    return e164


def country_of(e164: str) -> str | None:
    """The ISO region code of an E.164 number (``DE``), or None when unknown."""
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    return str(region) if region and region != "ZZ" else None
