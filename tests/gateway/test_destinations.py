"""The outbound policy's data: defaults, prefix notation, longest-prefix match, validation."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.destinations import (
    DEFAULT_POLICY,
    EU_COUNTRIES,
    FIELDS,
    Policy,
    PolicyError,
    country_of,
    parse_fields,
    prefix_e164,
)


def policy(**values: Any) -> Policy:
    """The defaults with ``values`` (in API notation, region DE) on top."""
    return Policy.build(DEFAULT_POLICY, parse_fields(values, "DE"))


def rule(p: Policy, number: str) -> dict[str, str] | None:
    """The details of the rule that refuses ``number``, or None when it may be sent to."""
    why = p.refusal(number)
    return None if why is None else why[1]


def test_defaults_are_the_eu_and_the_german_premium_ranges() -> None:
    assert len(EU_COUNTRIES) == 27 and {"DE", "FR", "AT", "SK"} <= EU_COUNTRIES
    assert not {"GB", "CH", "NO", "AX"} & EU_COUNTRIES
    doc = DEFAULT_POLICY.doc()
    assert doc["countries"] == sorted(EU_COUNTRIES)
    assert doc["blocked_prefixes"] == ["+49118", "+49137", "+49180", "+49190", "+49900"]
    assert doc["allowed_prefixes"] == []
    assert doc["destination_channels"] == ["sms", "fax"]
    assert (doc["destination_limit"], doc["destination_window_seconds"]) == (20, 3600)
    assert (doc["member_limit"], doc["member_window_seconds"]) == (60, 60)
    assert doc["locked_prefixes"] == ["+49137", "+49900"]
    assert list(doc) == [*FIELDS, "locked_prefixes"]


@pytest.mark.parametrize(
    ("text", "region", "e164"),
    [
        ("0900", "DE", "+49900"),
        ("118", "DE", "+49118"),  # no trunk prefix: a national number starting with 118
        ("0180 5", "DE", "+491805"),
        ("+49 (0)900", "DE", "+49900"),
        ("0049-900", "DE", "+49900"),
        ("+44 9", "DE", "+449"),
        ("0900", "AT", "+43900"),  # the team's region decides
        ("06", "IT", "+3906"),  # Italy keeps its leading 0
        ("011 44 9", "US", "+449"),  # the region's international prefix
        ("06 90", "HU", "+3690"),  # Hungary's trunk prefix is 06
        ("+1", "DE", "+1"),
    ],
)
def test_prefixes_in_any_notation_become_e164(text: str, region: str, e164: str) -> None:
    assert prefix_e164(text, region) == e164


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a number prefix"),
        ("+", "not a number prefix"),
        ("09x0", "not a number prefix"),
        ("+4", "country calling code"),  # no country code is just "4"
        ("+999", "country calling code"),
        ("+49" + "1" * 14, "at most 15"),
    ],
)
def test_bad_prefixes_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        prefix_e164(text, "DE")


def test_national_notation_needs_a_known_region() -> None:
    with pytest.raises(ValueError, match="region"):
        prefix_e164("0900", "XX")
    assert prefix_e164("+49900", "XX") == "+49900"


def test_default_blocks_premium_and_allows_ordinary_numbers() -> None:
    p = DEFAULT_POLICY
    assert rule(p, "+499001234567") == {"rule": "blocked_prefix", "prefix": "+49900"}
    assert rule(p, "+491371234567") == {"rule": "blocked_prefix", "prefix": "+49137"}
    assert rule(p, "+491801234567") == {"rule": "blocked_prefix", "prefix": "+49180"}
    assert rule(p, "+4911833") == {"rule": "blocked_prefix", "prefix": "+49118"}
    for ordinary in ("+4917612345678", "+4930123456", "+33612345678", "+43664123456"):
        assert rule(p, ordinary) is None
    why = p.refusal("+499001234567")
    assert why is not None and why[0] == "+499001234567 matches the blocked prefix +49900"


def test_longest_prefix_decides_both_ways() -> None:
    p = policy(
        blocked_prefixes=["0180", "0151 12"],
        allowed_prefixes=["0180 1234", "0151"],
    )
    # An allowed exception inside a blocked range ...
    assert rule(p, "+491801234567") is None
    assert rule(p, "+491801299999") == {"rule": "blocked_prefix", "prefix": "+49180"}
    # ... and a blocked range inside an allowed one.
    assert rule(p, "+4915112345671") == {"rule": "blocked_prefix", "prefix": "+4915112"}
    assert rule(p, "+4915199999999") is None
    # Lists are normalized: sorted E.164, no duplicates.
    assert p.blocked_prefixes == ("+4915112", "+49180")  # they replace the defaults
    assert p.allowed_prefixes == ("+49151", "+491801234")


def test_countries_decide_when_no_prefix_matches() -> None:
    p = policy(countries=["de", "AT"])
    assert rule(p, "+43664123456") is None
    assert rule(p, "+33612345678") == {"rule": "country", "country": "FR"}
    why = p.refusal("+33612345678")
    assert why is not None and why[0] == "country FR of +33612345678 is not in the allowlist"
    # An allowed prefix admits a country that is not listed (it is the longer rule).
    p = policy(countries=["DE"], allowed_prefixes=["+4179"])
    assert rule(p, "+41791234567") is None
    assert rule(p, "+41441234567") == {"rule": "country", "country": "CH"}
    # International networks belong to no country: only "*" admits them.
    assert rule(p, "+882345678901") == {"rule": "country"}
    anywhere = policy(countries=["*"])
    assert rule(anywhere, "+882345678901") is None
    assert rule(anywhere, "+12125550123") is None
    assert rule(anywhere, "+499001234567") == {"rule": "blocked_prefix", "prefix": "+49900"}


def test_country_of_shared_calling_codes() -> None:
    assert country_of("+4917612345678") == "DE"
    assert country_of("+33612345678") == "FR"
    assert country_of("+12125550123") == "US"
    assert country_of("+14165550123") == "CA"
    assert country_of("+35818123456") == "AX"  # Åland shares Finland's +358
    assert country_of("+358401234567") == "FI"
    assert country_of("+882345678901") is None


def test_parse_fields_normalizes() -> None:
    values = parse_fields(
        {
            "countries": ["fr", "DE", "de"],
            "destination_channels": ["fax", "sms", "whatsapp"],
            "destination_limit": None,
            "member_limit": 5,
            "member_window_seconds": 1,
        },
        "DE",
    )
    assert values == {
        "countries": ["DE", "FR"],
        "destination_channels": ["sms", "whatsapp", "fax"],
        "destination_limit": None,
        "member_limit": 5,
        "member_window_seconds": 1,
    }
    # TOML has no null: the configuration turns a limit off with false.
    assert parse_fields({"member_limit": False}, "DE", off=False) == {"member_limit": None}


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        ({"country": ["DE"]}, "country", "unknown field"),
        ({"countries": "DE"}, "countries", "list of strings"),
        ({"countries": ["DE", 1]}, "countries", "list of strings"),
        ({"countries": ["XX"]}, "countries", "'XX' is not an ISO 3166-1"),
        ({"countries": ["GER"]}, "countries", "is not an ISO 3166-1"),
        ({"countries": ["*", "DE"]}, "countries", "cannot be combined"),
        ({"blocked_prefixes": ["0900", "x"]}, "blocked_prefixes", "'x' is not a number prefix"),
        ({"allowed_prefixes": ["+999"]}, "allowed_prefixes", "country calling code"),
        ({"destination_channels": ["mms"]}, "destination_channels", "unknown channel 'mms'"),
        ({"destination_limit": 0}, "destination_limit", "or null for no limit"),
        ({"destination_limit": -1}, "destination_limit", "whole number"),
        ({"destination_limit": 2.5}, "destination_limit", "whole number"),
        ({"destination_limit": "20"}, "destination_limit", "whole number"),
        ({"member_limit": True}, "member_limit", "whole number"),
        ({"member_limit": False}, "member_limit", "whole number"),  # JSON: null turns off
        ({"member_window_seconds": 0}, "member_window_seconds", "whole seconds"),
        ({"member_window_seconds": None}, "member_window_seconds", "whole seconds"),
        ({"destination_window_seconds": 31 * 86_400 + 1}, "destination_window_seconds", "31"),
    ],
)
def test_parse_fields_names_the_bad_field(doc: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_fields(doc, "DE")
    assert exc.value.field == field
    assert message in exc.value.message


def test_a_prefix_cannot_be_blocked_and_allowed() -> None:
    with pytest.raises(PolicyError) as exc:
        policy(allowed_prefixes=["0900"])  # blocked by default
    assert exc.value.field == "allowed_prefixes"
    assert "+49900 is also a blocked prefix" in exc.value.message


def test_too_many_prefixes() -> None:
    with pytest.raises(PolicyError, match="at most 10000"):
        parse_fields({"blocked_prefixes": ["+49"] * 10_001}, "DE")


def test_build_keeps_unlisted_fields_of_the_base() -> None:
    base = policy(countries=["DE"], member_limit=7)
    p = Policy.build(base, parse_fields({"destination_limit": 3}, "DE"))
    assert p.countries == frozenset({"DE"}) and p.member_limit == 7
    assert p.destination_limit == 3
    assert p.blocked_prefixes == DEFAULT_POLICY.blocked_prefixes
