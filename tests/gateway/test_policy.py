"""The outbound policy on the send path: screening, limits, [policy] and the policy book."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.clock import FrozenClock
from gateway.config import load_settings, parse_settings
from gateway.destinations import DEFAULT_POLICY, Policy, PolicyError, parse_fields
from gateway.errors import ConfigError, DestinationBlocked, ValidationError
from gateway.ids import new_id
from gateway.models import Channel, Team
from gateway.policy import PolicyBook, scope, screen, send_limits
from gateway.store.base import Store

PREMIUM = "+491801234567"  # shared-cost 0180: blocked by default, not locked
CONTACT = "+4917612345678"


def policy(**values: object) -> Policy:
    return Policy.build(DEFAULT_POLICY, parse_fields(values, "DE"))


# -- screening ---------------------------------------------------------------------------
def test_sms_and_fax_are_screened_whatsapp_is_not() -> None:
    for channel in (Channel.SMS, Channel.FAX):
        with pytest.raises(DestinationBlocked) as exc:
            screen(DEFAULT_POLICY, channel, PREMIUM)
        assert exc.value.status == 403 and exc.value.code == "destination_blocked"
        assert exc.value.detail == f"{PREMIUM} matches the blocked prefix +49180"
        assert exc.value.extra == {"rule": "blocked_prefix", "prefix": "+49180"}
    screen(DEFAULT_POLICY, Channel.WHATSAPP, PREMIUM)
    screen(DEFAULT_POLICY, Channel.WHATSAPP, "+12125550123")
    screen(DEFAULT_POLICY, Channel.SMS, CONTACT)


def test_whatsapp_with_sms_fallback_is_screened_as_sms() -> None:
    with pytest.raises(DestinationBlocked) as exc:
        screen(DEFAULT_POLICY, Channel.WHATSAPP, PREMIUM, "sms")
    assert exc.value.detail.endswith("(checked for the SMS fallback)")
    with pytest.raises(DestinationBlocked) as exc:
        screen(DEFAULT_POLICY, Channel.WHATSAPP, "+12125550123", "sms")
    assert exc.value.extra == {"rule": "country", "country": "US"}
    # Unless SMS is not screened at all.
    screen(policy(destination_channels=["fax"]), Channel.WHATSAPP, PREMIUM, "sms")


def test_screened_channels_are_configurable() -> None:
    everything = policy(destination_channels=["sms", "whatsapp", "fax"])
    with pytest.raises(DestinationBlocked):
        screen(everything, Channel.WHATSAPP, PREMIUM)
    nothing = policy(destination_channels=[])
    for channel in Channel:
        screen(nothing, channel, PREMIUM)


def test_send_limits() -> None:
    limits = send_limits(DEFAULT_POLICY, "team_1", "mem_1", CONTACT)
    assert [(lim.key, lim.cap, lim.window_ms, lim.what, lim.subject) for lim in limits] == [
        (f"dest:team_1:{CONTACT}", 20, 3_600_000, "destination", CONTACT),
        ("member:mem_1", 60, 60_000, "member", "mem_1"),
    ]
    off = policy(destination_limit=None, member_limit=None)
    assert send_limits(off, "team_1", "mem_1", CONTACT) == ()
    only_member = policy(destination_limit=None, member_window_seconds=3600)
    (member,) = send_limits(only_member, "team_1", "mem_1", CONTACT)
    assert (member.what, member.window_ms) == ("member", 3_600_000)


def test_limit_refusal_says_which_and_when() -> None:
    dest, member = send_limits(DEFAULT_POLICY, "team_1", "mem_1", CONTACT)
    err = dest.refusal(1_234_001)
    assert err.status == 429 and err.code == "rate_limited"
    assert err.detail == (
        f"the destination limit of 20 messages per hour to {CONTACT} is reached; retry in 1235 s"
    )
    assert err.extra == {
        "limit": "destination",
        "max": 20,
        "window_seconds": 3600,
        "retry_after": 1235,
    }
    err = member.refusal(0)  # never "retry in 0 s"
    assert err.extra["retry_after"] == 1
    assert "member limit of 60 messages per minute by mem_1" in err.detail


# -- [policy] in the configuration ---------------------------------------------------------
def test_default_settings_carry_the_default_policy() -> None:
    assert parse_settings({}).policy is DEFAULT_POLICY


def test_policy_table(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        """
[gateway]
region = "AT"

[policy]
countries = ["AT", "de"]
blocked_prefixes = ["0900", "+49 900", "0049 137"]
allowed_prefixes = ["0900 123"]
destination_limit = 5
destination_window_seconds = 600
member_limit = false
""",
        encoding="utf-8",
    )
    p = load_settings(path).policy
    assert p.countries == frozenset({"AT", "DE"})
    # National notation is read in gateway.region (Austria here).
    assert p.blocked_prefixes == ("+43900", "+49137", "+49900")
    assert p.allowed_prefixes == ("+43900123",)
    assert (p.destination_limit, p.destination_window_seconds) == (5, 600)
    assert p.member_limit is None and p.member_window_seconds == 60
    assert p.destination_channels == DEFAULT_POLICY.destination_channels


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"countries": ["DE", "XY"]}, "policy.countries: 'XY' is not an ISO 3166-1"),
        ({"blocked_prefix": ["0900"]}, "policy.blocked_prefix: unknown field"),
        ({"member_limit": 0}, "policy.member_limit: expected a whole number"),
        ({"member_limit": 0}, "or false for no limit"),
        ({"allowed_prefixes": ["0137"]}, "policy.allowed_prefixes: +49137 is also a blocked"),
        ({"destination_channels": "sms"}, "policy.destination_channels: expected a list"),
    ],
)
def test_policy_table_errors_name_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_settings({"policy": table})


def test_policy_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"^policy: expected a table$"):
        parse_settings({"policy": ["DE"]})


# -- the policy book (both backends) -------------------------------------------------------
def team(clock: FrozenClock, region: str = "DE") -> Team:
    return Team(new_id("team"), "Acme", "business", 0, region, clock.now())


@pytest.mark.anyio
async def test_book_merges_the_override_and_caches(store: Store, clock: FrozenClock) -> None:
    t = team(clock, "AT")
    book = PolicyBook(store, ttl=3600)
    first = await book.effective(t, DEFAULT_POLICY)
    assert first.policy is DEFAULT_POLICY and first.team_fields == frozenset()
    assert first.view()["updated_at"] is None and first.view()["team_fields"] == []

    stored = await book.replace(
        t, {"blocked_prefixes": ["0900"], "member_limit": None}, DEFAULT_POLICY, clock.now()
    )
    assert stored.policy.blocked_prefixes == ("+43900",)  # the team's region
    assert stored.policy.member_limit is None
    assert stored.policy.countries == DEFAULT_POLICY.countries
    assert stored.view()["team_fields"] == ["blocked_prefixes", "member_limit"]
    assert stored.view()["updated_at"] == "2026-03-15T12:00:00.000Z"
    # The store holds the normal form under the team's scope; this process sees it at once.
    doc = await store.get_setting(scope(t.id))
    assert doc == {
        "override": {"blocked_prefixes": ["+43900"], "member_limit": None},
        "updated_at": "2026-03-15T12:00:00.000Z",
    }
    assert (await book.effective(t, DEFAULT_POLICY)).policy == stored.policy

    # Another process's change is seen once the cache entry expires ...
    await store.put_setting(scope(t.id), {"override": {"countries": ["DE"]}, "updated_at": None})
    assert (await book.effective(t, DEFAULT_POLICY)).policy == stored.policy
    fresh = await PolicyBook(store, ttl=0).effective(t, DEFAULT_POLICY)
    assert fresh.policy.countries == frozenset({"DE"})
    assert fresh.policy.blocked_prefixes == DEFAULT_POLICY.blocked_prefixes
    # ... and new provider defaults rebuild it at once.
    defaults = Policy.build(DEFAULT_POLICY, {"destination_limit": 7})
    rebuilt = await book.effective(t, defaults)
    assert rebuilt.policy.destination_limit == 7 and rebuilt.policy.countries == {"DE"}


@pytest.mark.anyio
async def test_book_refuses_bad_overrides_and_keeps_the_old(
    store: Store, clock: FrozenClock
) -> None:
    t = team(clock)
    book = PolicyBook(store)
    await book.replace(t, {"member_limit": 3}, DEFAULT_POLICY, clock.now())
    for body, field in (
        ({"member_limit": 0}, "member_limit"),
        ({"colour": "red"}, "colour"),
        ({"allowed_prefixes": ["0900"]}, "allowed_prefixes"),
    ):
        with pytest.raises(ValidationError) as exc:
            await book.replace(t, body, DEFAULT_POLICY, clock.now())
        assert exc.value.extra == {"field": field}
        assert exc.value.detail.startswith(f"{field}: ")
    with pytest.raises(ValidationError) as exc:
        await book.replace(t, ["member_limit"], DEFAULT_POLICY, clock.now())
    assert exc.value.detail == "the body must be a JSON object of policy fields"
    assert (await PolicyBook(store).effective(t, DEFAULT_POLICY)).policy.member_limit == 3


@pytest.mark.anyio
async def test_stored_override_survives_new_defaults(store: Store, clock: FrozenClock) -> None:
    """The provider later blocks a prefix a team allowed (or the reverse): the team's list
    wins, sends keep working."""
    t = team(clock)
    book = PolicyBook(store, ttl=0)
    await book.replace(t, {"allowed_prefixes": ["0180 123"]}, DEFAULT_POLICY, clock.now())
    stricter = policy(blocked_prefixes=["0180", "0180 123"])
    p = (await book.effective(t, stricter)).policy
    assert p.allowed_prefixes == ("+49180123",) and p.blocked_prefixes == ("+49180",)
    assert p.refusal("+491801234567") is None
    await book.replace(t, {"blocked_prefixes": ["0180"]}, DEFAULT_POLICY, clock.now())
    looser = policy(allowed_prefixes=["0180"], blocked_prefixes=["0900"])
    p = (await book.effective(t, looser)).policy
    assert p.blocked_prefixes == ("+49180",) and p.allowed_prefixes == ()
    # A PUT is held to the full rule: it must settle a conflict itself.
    with pytest.raises(ValidationError, match="also a blocked prefix"):
        await book.replace(t, {"allowed_prefixes": ["0180"]}, stricter, clock.now())


# -- provider-locked prefixes ----------------------------------------------------------------
LOCKED = "+499001234567"  # premium rate: blocked and locked by default


def test_a_locked_prefix_holds_whatever_the_team_set() -> None:
    # The team screens nothing and admits any country: the lock still refuses SMS and fax.
    open_policy = policy(destination_channels=[], countries=["*"], blocked_prefixes=[])
    for channel in (Channel.SMS, Channel.FAX):
        with pytest.raises(DestinationBlocked) as exc:
            screen(open_policy, channel, LOCKED)
        assert exc.value.detail == f"{LOCKED} matches the provider-locked prefix +49900"
        assert exc.value.extra == {"rule": "locked_prefix", "prefix": "+49900"}
    screen(open_policy, Channel.WHATSAPP, LOCKED)  # Meta delivers it; no premium charge
    with pytest.raises(DestinationBlocked, match=r"locked prefix .*checked for the SMS fallback"):
        screen(open_policy, Channel.WHATSAPP, LOCKED, fallback="sms")


def test_a_team_cannot_allow_under_or_change_a_lock() -> None:
    with pytest.raises(PolicyError) as exc:
        policy(blocked_prefixes=[], allowed_prefixes=["0900 123"])
    assert exc.value.field == "allowed_prefixes"
    assert "+49900123 is inside the provider-locked prefix +49900" in str(exc.value)
    with pytest.raises(PolicyError) as exc:
        parse_fields({"locked_prefixes": []}, "DE")
    assert exc.value.field == "locked_prefixes" and "set by the provider" in exc.value.message


def test_the_provider_sets_the_locks_in_its_policy_table(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text('[policy]\nlocked_prefixes = ["0137"]\n', encoding="utf-8")
    p = load_settings(path).policy
    assert p.locked_prefixes == ("+49137",)
    # 0900 is only blocked now (not locked): a team may re-open part of it.
    reopened = Policy.build(p, parse_fields({"allowed_prefixes": ["0900 123"]}, "DE"))
    screen(reopened, Channel.SMS, "+499001234567")
    with pytest.raises(DestinationBlocked, match=r"provider-locked prefix \+49137"):
        screen(p, Channel.SMS, "+491371234567")


@pytest.mark.anyio
async def test_a_stored_override_under_a_new_lock_is_dropped(
    store: Store, clock: FrozenClock
) -> None:
    """The provider locks a range a team had re-opened: the lock wins, sends keep working."""
    t = team(clock)
    book = PolicyBook(store, ttl=0)
    unlocked = Policy.build(DEFAULT_POLICY, {"locked_prefixes": []})
    await book.replace(t, {"allowed_prefixes": ["0900 123"]}, unlocked, clock.now())
    assert (await book.effective(t, unlocked)).policy.allowed_prefixes == ("+49900123",)
    assert (await book.effective(t, DEFAULT_POLICY)).policy.allowed_prefixes == ()
