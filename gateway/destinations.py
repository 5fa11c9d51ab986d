"""The outbound policy's data: destination screening rules and send limits, parsed and compiled.

One ``Policy`` holds the provider-wide defaults (``[policy]`` in the configuration), and a
team may override any of its fields (``PUT /v1/policy``). Both go through one validator,
``parse_fields``, so a bad entry is refused the same way in the file and in the API, naming
its field. A policy is compiled once, when it is built: a send then costs a few dict
lookups, never a parse.

Destination rules (channels in ``destination_channels``, by default SMS and fax — the
telephony-billed ones):

* ``blocked_prefixes`` and ``allowed_prefixes`` are E.164 prefixes; the LONGEST prefix of
  the number found in either list decides (an allowed ``+491801234`` re-opens part of a
  blocked ``+49180``; a blocked ``+4915112`` closes part of an allowed ``+49151``);
* when no prefix matches, the number's country must be in ``countries`` (``"*"``: any).
  So an allowed prefix also admits a number of a country that is not in the list.

``locked_prefixes`` are the provider's own (``[policy]`` only, never a team's): a number
under one is refused on SMS and fax whatever the team's override says, so a stolen team
key cannot re-open the premium-rate ranges that toll fraud goes for. Default: +49900
(premium rate) and +49137 (mass traffic, charged per call).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import PhoneMetadata

from gateway.models import Channel

# The EU-27 member states: Germany plus the "zone 1" countries of the price list.
EU_COUNTRIES = frozenset(
    {"DE", "AT", "BE", "BG", "CY", "CZ", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
     "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"}
)  # fmt: skip
# German premium and special ranges, in national notation (read with region DE):
# 0137 mass-traffic/televoting, 0180 shared-cost service, 0190 former premium rate,
# 0900 premium rate, 118 directory enquiries.
DEFAULT_BLOCKED_NATIONAL = ("0137", "0180", "0190", "0900", "118")
DEFAULT_LOCKED_NATIONAL = ("0137", "0900")
ANY_COUNTRY = "*"
FIELDS = (
    "countries",
    "blocked_prefixes",
    "allowed_prefixes",
    "destination_channels",
    "destination_limit",
    "destination_window_seconds",
    "member_limit",
    "member_window_seconds",
    "inbound_fax_blocked",
    "inbound_fax_allowed",
)
# Set in ``[policy]`` only: a team's override may not name them.
PROVIDER_FIELDS = ("locked_prefixes",)
MAX_PREFIXES = 10_000
MAX_WINDOW_SECONDS = 31 * 86_400
MAX_LIMIT = 1_000_000_000
_SEPARATORS = re.compile(r"[\s\-./()]")
_REGIONS = frozenset(r for r in phonenumbers.SUPPORTED_REGIONS if r != "001")


class PolicyError(ValueError):
    """A policy field is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def prefix_e164(text: str, region: str) -> str:
    """A number prefix in E.164 (``+49900``) from E.164, ``00…`` or national notation.

    National notation is read in ``region``: its trunk prefix (``0`` in Germany) is
    dropped and the country code put in front, so ``0900`` and ``118`` become ``+49900``
    and ``+49118``. Raises ``ValueError`` with the reason.
    """
    # "+49 (0)900": the bracketed trunk prefix is not dialled after a country code.
    raw = _SEPARATORS.sub("", text.replace("(0)", "")) if isinstance(text, str) else ""
    if not raw:
        raise ValueError(f"{text!r} is not a number prefix")
    meta = PhoneMetadata.metadata_for_region(region.upper())
    if raw.startswith("+"):
        digits = raw[1:]
    elif meta is not None and re.match(f"(?:{meta.international_prefix})", raw):
        digits = re.sub(f"^(?:{meta.international_prefix})", "", raw)
    elif meta is None:
        raise ValueError(f"{text!r}: national notation needs a known region, not {region!r}")
    else:
        national = raw
        trunk = meta.national_prefix
        if trunk and national.startswith(trunk):
            national = national[len(trunk) :]
        digits = f"{meta.country_code}{national}"
    if not digits.isdigit() or len(digits) > 15:
        raise ValueError(f"{text!r} is not a number prefix (digits only, at most 15)")
    if _calling_code(digits) is None:
        raise ValueError(f"{text!r} does not start with a country calling code")
    return "+" + digits


def _calling_code(digits: str) -> int | None:
    # Calling codes are prefix-free (ITU-T E.164): at most one of 1, 2, 3 digits matches.
    for n in (1, 2, 3):
        if int(digits[:n]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return int(digits[:n])
    return None


@lru_cache(maxsize=65536)
def country_of(e164: str) -> str | None:
    """The ISO region of a valid E.164 number (``DE``); None for international networks.

    Calling codes of one region answer from a table; shared ones (+1, +7, +39, +44, …)
    ask phonenumbers. Remembered per number.
    """
    code = _calling_code(e164[1:4]) if e164[1:4].isdigit() else None
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code or 0, ())
    if len(regions) == 1:
        return None if regions[0] == "001" else str(regions[0])
    if not regions:
        return None
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    return str(region) if region and region not in ("ZZ", "001") else None


# -- field parsers: each takes the raw value and the region, returns the normal form ---------
def _str_list(value: Any, name: str, limit: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(name, "expected a list of strings")
    if len(value) > limit:
        raise PolicyError(name, f"at most {limit} entries")
    return value


def _countries(value: Any, region: str) -> list[str]:
    items = _str_list(value, "countries", 1000)
    out = set()
    for item in items:
        code = item.strip().upper()
        if code == ANY_COUNTRY:
            out.add(code)
        elif code not in _REGIONS:
            raise PolicyError(
                "countries", f'{item!r} is not an ISO 3166-1 alpha-2 country code (or "*")'
            )
        else:
            out.add(code)
    if ANY_COUNTRY in out and len(out) > 1:
        raise PolicyError("countries", '"*" (any country) cannot be combined with codes')
    return sorted(out)


def _prefixes(name: str) -> Callable[[Any, str], list[str]]:
    def parse(value: Any, region: str) -> list[str]:
        out = set()
        for item in _str_list(value, name, MAX_PREFIXES):
            try:
                out.add(prefix_e164(item, region))
            except ValueError as exc:
                raise PolicyError(name, str(exc)) from None
        return sorted(out)

    return parse


def _channels(value: Any, region: str) -> list[str]:
    known = [c.value for c in Channel]
    items = _str_list(value, "destination_channels", len(known))
    for item in items:
        if item not in known:
            raise PolicyError(
                "destination_channels", f"unknown channel {item!r} (use {', '.join(known)})"
            )
    return [c for c in known if c in items]


def _count(name: str, off: object) -> Callable[[Any, str], int | None]:
    def parse(value: Any, region: str) -> int | None:
        if value is off:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
            shown = "null" if off is None else "false"
            raise PolicyError(
                name, f"expected a whole number from 1 to {MAX_LIMIT}, or {shown} for no limit"
            )
        return value

    return parse


def _window(name: str) -> Callable[[Any, str], int]:
    def parse(value: Any, region: str) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_WINDOW_SECONDS
        ):
            raise PolicyError(
                name, f"expected whole seconds from 1 to {MAX_WINDOW_SECONDS} (31 days)"
            )
        return value

    return parse


def parse_fields(
    doc: Any, region: str, off: object = None, provider: bool = False
) -> dict[str, Any]:
    """Validate the policy fields present in ``doc``; returns them in normal form.

    Prefixes in national notation are read in ``region``. ``off`` is the value that turns
    a limit off: ``None`` (JSON ``null``) in the API, ``False`` in TOML (it has no null).
    ``provider``: the provider's ``[policy]``, which may also set ``PROVIDER_FIELDS``.
    Raises ``PolicyError`` naming the first bad field.
    """
    if not isinstance(doc, dict):
        raise PolicyError("", "object of policy fields")
    parsers: dict[str, Callable[[Any, str], Any]] = {
        "countries": _countries,
        "blocked_prefixes": _prefixes("blocked_prefixes"),
        "allowed_prefixes": _prefixes("allowed_prefixes"),
        "destination_channels": _channels,
        "destination_limit": _count("destination_limit", off),
        "destination_window_seconds": _window("destination_window_seconds"),
        "member_limit": _count("member_limit", off),
        "member_window_seconds": _window("member_window_seconds"),
        "locked_prefixes": _prefixes("locked_prefixes"),
        "inbound_fax_blocked": _prefixes("inbound_fax_blocked"),
        "inbound_fax_allowed": _prefixes("inbound_fax_allowed"),
    }
    out: dict[str, Any] = {}
    for name in doc:
        if name in PROVIDER_FIELDS and not provider:
            raise PolicyError(str(name), "set by the provider; a team's policy cannot change it")
        if name not in parsers:
            raise PolicyError(str(name), f"unknown field (known: {', '.join(FIELDS)})")
        out[name] = parsers[name](doc[name], region)
    return out


def _lock_of(prefix: str, locked: frozenset[str] | set[str], lengths: list[int]) -> str | None:
    """The locked prefix (E.164) that ``prefix`` lies under, or None."""
    digits = prefix[1:]
    return next((f"+{digits[:n]}" for n in lengths if digits[:n] in locked), None)


# -- the compiled policy -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Policy:
    """An outbound policy in normal form, compiled for the send path."""

    countries: frozenset[str] = EU_COUNTRIES
    blocked_prefixes: tuple[str, ...] = ()
    allowed_prefixes: tuple[str, ...] = ()
    destination_channels: frozenset[str] = frozenset({Channel.SMS.value, Channel.FAX.value})
    destination_limit: int | None = 20
    destination_window_seconds: int = 3600
    member_limit: int | None = 60
    member_window_seconds: int = 60
    locked_prefixes: tuple[str, ...] = ()
    # Callers (numbers or prefixes) whose faxes are refused (603); when the allowed list
    # is not empty, only callers on it get through.
    inbound_fax_blocked: tuple[str, ...] = ()
    inbound_fax_allowed: tuple[str, ...] = ()
    # Compiled: prefix digits (without "+") -> True when blocked, False when allowed, and
    # the lengths of those prefixes, longest first.
    rules: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)
    lengths: tuple[int, ...] = field(default=(), compare=False, repr=False)
    any_country: bool = field(default=False, compare=False, repr=False)
    # Compiled locked prefixes: digits (without "+"), and their lengths.
    locked: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    locked_lengths: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def build(cls, base: Policy, values: dict[str, Any], lenient: bool = False) -> Policy:
        """``base`` with ``values`` (from ``parse_fields``) replacing its fields; raises
        ``PolicyError`` on a prefix that is both blocked and allowed.

        ``lenient`` settles that instead when only one of the lists is in ``values``: the
        list given wins (a stored team override must keep working when the provider's
        defaults later list one of its prefixes on the other side).
        """
        doc = base.doc()
        doc.update(values)
        blocked, allowed = set(doc["blocked_prefixes"]), set(doc["allowed_prefixes"])
        both = sorted(blocked & allowed)
        if both and lenient and ("allowed_prefixes" in values) != ("blocked_prefixes" in values):
            (allowed if "blocked_prefixes" in values else blocked).difference_update(both)
            both = []
        if both:
            raise PolicyError("allowed_prefixes", f"{both[0]} is also a blocked prefix")
        locked = {p[1:] for p in doc["locked_prefixes"]}
        lengths = sorted({len(p) for p in locked}, reverse=True)
        under = sorted(a for a in allowed if _lock_of(a, locked, lengths))
        if under and lenient:
            allowed.difference_update(under)  # a lock the provider added later wins
        elif under:
            lock = _lock_of(under[0], locked, lengths)
            raise PolicyError(
                "allowed_prefixes", f"{under[0]} is inside the provider-locked prefix {lock}"
            )
        rules = {p[1:]: True for p in blocked} | {p[1:]: False for p in allowed}
        return cls(
            countries=frozenset(doc["countries"]),
            blocked_prefixes=tuple(sorted(blocked)),
            allowed_prefixes=tuple(sorted(allowed)),
            destination_channels=frozenset(doc["destination_channels"]),
            destination_limit=doc["destination_limit"],
            destination_window_seconds=doc["destination_window_seconds"],
            member_limit=doc["member_limit"],
            member_window_seconds=doc["member_window_seconds"],
            rules=rules,
            lengths=tuple(sorted({len(p) for p in rules}, reverse=True)),
            any_country=ANY_COUNTRY in doc["countries"],
            locked_prefixes=tuple(sorted(doc["locked_prefixes"])),
            inbound_fax_blocked=tuple(sorted(doc["inbound_fax_blocked"])),
            inbound_fax_allowed=tuple(sorted(doc["inbound_fax_allowed"])),
            locked=frozenset(locked),
            locked_lengths=tuple(lengths),
        )

    def doc(self) -> dict[str, Any]:
        """The policy as a JSON document (every field; lists sorted)."""
        return {
            "countries": sorted(self.countries),
            "blocked_prefixes": list(self.blocked_prefixes),
            "allowed_prefixes": list(self.allowed_prefixes),
            "destination_channels": [
                c.value for c in Channel if c.value in self.destination_channels
            ],
            "destination_limit": self.destination_limit,
            "destination_window_seconds": self.destination_window_seconds,
            "member_limit": self.member_limit,
            "member_window_seconds": self.member_window_seconds,
            "inbound_fax_blocked": list(self.inbound_fax_blocked),
            "inbound_fax_allowed": list(self.inbound_fax_allowed),
            "locked_prefixes": list(self.locked_prefixes),
        }

    def inbound_fax_refused(self, caller: str) -> bool:
        """Whether a fax from ``caller`` (E.164) is refused: on the blocked list, or off
        the allowed list when that list is not empty (a hidden caller is off every list)."""
        if any(caller.startswith(p) for p in self.inbound_fax_blocked):
            return True
        return bool(self.inbound_fax_allowed) and not any(
            caller.startswith(p) for p in self.inbound_fax_allowed
        )

    def locked_refusal(self, number: str) -> tuple[str, dict[str, str]] | None:
        """Why ``number`` falls under a provider-locked prefix, or None."""
        digits = number[1:]
        for n in self.locked_lengths:
            if digits[:n] in self.locked:
                prefix = "+" + digits[:n]
                return (
                    f"{number} matches the provider-locked prefix {prefix}",
                    {"rule": "locked_prefix", "prefix": prefix},
                )
        return None

    def refusal(self, number: str) -> tuple[str, dict[str, str]] | None:
        """Why ``number`` (E.164) may not be sent to, with the rule's details; None if it may.

        Costs one dict lookup per distinct length of the listed prefixes (so at most one
        per digit of the number), and one for the country.
        """
        digits = number[1:]
        rules = self.rules
        for n in self.lengths:
            blocked = rules.get(digits[:n])
            if blocked is None:
                continue
            if not blocked:
                return None
            prefix = "+" + digits[:n]
            return (
                f"{number} matches the blocked prefix {prefix}",
                {"rule": "blocked_prefix", "prefix": prefix},
            )
        if self.any_country:
            return None
        country = country_of(number)
        if country is None:
            return (
                f"{number} belongs to no country (an international network); it is not in "
                "the country allowlist",
                {"rule": "country"},
            )
        if country in self.countries:
            return None
        return (
            f"country {country} of {number} is not in the allowlist",
            {"rule": "country", "country": country},
        )


def _default_policy() -> Policy:
    blocked = [prefix_e164(p, "DE") for p in DEFAULT_BLOCKED_NATIONAL]
    locked = [prefix_e164(p, "DE") for p in DEFAULT_LOCKED_NATIONAL]
    return Policy.build(Policy(), {"blocked_prefixes": blocked, "locked_prefixes": locked})


# The built-in defaults: EU-27 countries, the German premium and special ranges blocked,
# screening on SMS and fax, 20 sends per hour to one number, 60 per minute per member.
DEFAULT_POLICY = _default_policy()
