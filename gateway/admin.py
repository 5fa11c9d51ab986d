"""``gateway admin …``: the directory (teams, members, API keys) and the job queue, edited
directly in the configured store. Each command returns one JSON object and its text
(``gateway.cli`` prints one of them); ``create_team`` and ``create_member`` are also used
by ``gateway demo``.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers

from gateway.auth import create_key, revoke_key
from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.errors import ConfigError, Conflict, Forbidden, NotFound, ValidationError
from gateway.extensions import extension_commands
from gateway.ids import new_id
from gateway.models import Addon, ApiKey, Channel, Job, Member, Plan, Team, iso
from gateway.numbers import normalize, normalize_landline, normalize_mobile
from gateway.process import open_runtime
from gateway.quota import euros, period_of, quota_report
from gateway.store import open_store
from gateway.store.base import Store

# What an admin command hands back: the JSON object and the readable text.
Result = tuple[dict[str, Any], str]


# -- teams, members and keys ---------------------------------------------------------------
def team_view(team: Team) -> dict[str, Any]:
    """A team as the admin CLI shows it."""
    return {
        "id": team.id,
        "name": team.name,
        "plan": team.plan,
        "credit_limit": euros(team.credit_limit_micros),
        "region": team.region,
        "created_at": iso(team.created_at),
    }


def member_view(member: Member) -> dict[str, Any]:
    """A member as the admin CLI shows it."""
    return {
        "id": member.id,
        "team_id": member.team_id,
        "name": member.name,
        "email": member.email,
        "mobile": member.mobile,
        "whatsapp": member.number_for(Channel.WHATSAPP),
        "fax": member.fax,
        "addons": sorted(member.addons),
        "active": member.active,
        "created_at": iso(member.created_at),
    }


def _member_line(member: Member) -> str:
    """One member as a line of text."""
    parts = [f"{member.id}  {member.name} <{member.email}>"]
    if member.mobile:
        parts.append(f"mobile {member.mobile}")
    if member.whatsapp:
        parts.append(f"whatsapp {member.whatsapp}")
    if member.fax:
        parts.append(f"fax {member.fax}")
    parts.append("add-ons " + (",".join(sorted(member.addons)) or "none"))
    if not member.active:
        parts.append("(inactive)")
    return "  ".join(parts)


def parse_addons(text: str) -> frozenset[str]:
    """``sms,whatsapp`` → the set of add-ons; unknown names are a validation error."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    valid = {a.value for a in Addon}
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValidationError(
            f"unknown add-on(s) {', '.join(unknown)}; choose from {', '.join(sorted(valid))}",
            field="addons",
        )
    return frozenset(names)


async def _team(store: Store, team_id: str) -> Team:
    """The team, or ``NotFound``."""
    team = await store.get_team(team_id)
    if team is None:
        raise NotFound(f"team {team_id} does not exist")
    return team


async def create_team(
    store: Store, clock: Clock, name: str, plan: str, credit_limit_micros: int, region: str
) -> Team:
    """Create and store a team."""
    name = name.strip()
    if not name:
        raise ValidationError("the team name must not be empty", field="name")
    region = region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"{region!r} is not a region (use e.g. DE, AT, CH)", field="region")
    team = Team(new_id("team"), name, Plan(plan).value, credit_limit_micros, region, clock.now())
    await store.create_team(team)
    return team


async def create_member(
    store: Store,
    clock: Clock,
    team_id: str,
    name: str,
    email: str,
    mobile: str | None = None,
    fax: str | None = None,
    addons: frozenset[str] = frozenset(),
    whatsapp: str | None = None,
) -> Member:
    """Create an active member: numbers normalized in the team's region, plan cap enforced.
    ``whatsapp``: the number that carries their WhatsApp, a mobile or a landline one (not
    the fax number); without it WhatsApp uses the mobile number."""
    team = await _team(store, team_id)
    name, email = name.strip(), email.strip()
    if not name:
        raise ValidationError("the member name must not be empty", field="name")
    if "@" not in email.strip("@"):
        raise ValidationError(f"{email!r} is not an email address", field="email")
    e164_mobile = normalize_mobile(mobile, team.region) if mobile else None
    e164_fax = normalize_landline(fax, team.region) if fax else None
    e164_whatsapp = normalize(whatsapp, team.region) if whatsapp else None
    if e164_whatsapp is not None and e164_whatsapp == e164_fax:
        raise ValidationError(
            f"{e164_whatsapp} is the fax number; WhatsApp needs a number of its own (or the "
            "mobile number)",
            field="whatsapp",
        )
    if e164_whatsapp == e164_mobile:
        e164_whatsapp = None  # WhatsApp on the mobile number: the default
    if Addon.FAX in addons and e164_fax is None:
        raise ValidationError("the fax add-on needs a fax number (--fax)", field="addons")
    if Addon.SMS in addons and e164_mobile is None:
        raise ValidationError("the sms add-on needs a mobile number (--mobile)", field="addons")
    if Addon.WHATSAPP in addons and e164_mobile is None and e164_whatsapp is None:
        raise ValidationError(
            "the whatsapp add-on needs a WhatsApp number (--whatsapp, a mobile or a landline "
            "number) or a mobile number (--mobile)",
            field="addons",
        )
    member = Member(
        new_id("mem"),
        team.id,
        name,
        email,
        e164_mobile,
        e164_fax,
        addons,
        True,
        clock.now(),
        e164_whatsapp,
    )
    plan = Plan(team.plan)
    try:
        await store.create_member(member, plan.max_members)
    except Forbidden as exc:
        if exc.code != "plan_limit":
            raise
        raise Forbidden(
            f"team {team.id} is on the {plan.value} plan, which allows at most "
            f"{plan.max_members} active members",
            code="plan_limit",
        ) from None
    return member


async def _admin_team_create(
    args: argparse.Namespace, store: Store, clock: Clock, settings: Settings
) -> Result:
    """``admin team create``."""
    region = args.region or settings.region
    team = await create_team(store, clock, args.name, args.plan, args.credit_limit, region)
    text = (
        f"created team {team.id} {team.name!r}: {team.plan} plan "
        f"(at most {Plan(team.plan).max_members} active members), credit limit "
        f"{euros(team.credit_limit_micros)} EUR, region {team.region}"
    )
    return team_view(team), text


async def _admin_team_show(
    args: argparse.Namespace, store: Store, clock: Clock, settings: Settings
) -> Result:
    """``admin team show``: the team, its members and this month's usage."""
    team = await _team(store, args.team)
    members = await store.list_members(team.id)
    active = sum(1 for m in members if m.active)
    period = period_of(clock.now(), settings.tz)
    report = await quota_report(store, settings.tariff, team, members, period)
    used = {
        channel: sum(m["channels"][channel]["used"] for m in report["members"])
        for channel in settings.tariff.included
    }
    obj = {
        **team_view(team),
        "max_members": Plan(team.plan).max_members,
        "member_count": len(members),
        "active_members": active,
        "members": [member_view(m) for m in members],
        "quota": report,
    }
    lines = [
        f"team {team.id} {team.name!r}",
        f"  plan           {team.plan} ({active} of {Plan(team.plan).max_members} active members)",
        f"  credit limit   {euros(team.credit_limit_micros)} EUR",
        f"  region         {team.region}",
        f"  created        {iso(team.created_at)}",
        f"  usage {period}  "
        + ", ".join(f"{ch} {n} units" for ch, n in used.items())
        + f"; overage {report['overage_cost']} EUR",
        f"  members ({len(members)}):",
        *(f"    {_member_line(m)}" for m in members),
    ]
    return obj, "\n".join(lines)


async def _admin_member_create(args: argparse.Namespace, store: Store, clock: Clock) -> Result:
    """``admin member create``."""
    member = await create_member(
        store,
        clock,
        args.team,
        args.name,
        args.email,
        args.mobile,
        args.fax,
        parse_addons(args.addons),
        args.whatsapp,
    )
    return member_view(member), f"created member {_member_line(member)}"


async def _admin_member_list(args: argparse.Namespace, store: Store) -> Result:
    """``admin member list``."""
    team = await _team(store, args.team)
    members = await store.list_members(team.id)
    text = "\n".join(_member_line(m) for m in members) or f"team {team.id} has no members"
    return {"members": [member_view(m) for m in members]}, text


def key_view(key: ApiKey, secret: str | None = None) -> dict[str, Any]:
    """An API key (never its hash); with its secret when just created (shown this once)."""
    view: dict[str, Any] = {
        "id": key.id,
        "team_id": key.team_id or None,
        "member_id": key.member_id,
        "operator": key.operator,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at) if key.expires_at else None,
    }
    if secret is not None:
        view["key"] = secret
    return view


_UNITS = {"d": 86400, "h": 3600, "m": 60}


def parse_expiry(text: str, now: datetime) -> datetime:
    """``--expires``: an RFC 3339 time with a zone, or a duration from ``now`` (``90d``)."""
    number, unit = text[:-1], text[-1:]
    if unit in _UNITS and number.isdigit() and int(number) > 0:
        return now + timedelta(seconds=int(number) * _UNITS[unit])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValidationError(
            f"--expires {text!r}: give an RFC 3339 time with a zone (2027-01-31T00:00:00Z) "
            "or a duration such as 90d, 12h or 30m"
        )
    return when


def _key_owner(args: argparse.Namespace) -> str:
    """The team of ``--team``, or "" for ``--operator``."""
    return "" if args.operator else str(args.team)


async def _admin_key_create(args: argparse.Namespace, store: Store, clock: Clock) -> Result:
    """``admin key create``: the secret is printed once; only its hash is stored."""
    expires = parse_expiry(args.expires, clock.now()) if args.expires else None
    key, secret = await create_key(
        store, clock, _key_owner(args), args.member, expires_at=expires, operator=args.operator
    )
    if key.operator:
        scope = "the operator (GET /v1/health)"
    else:
        scope = f"team {key.team_id}, " + (
            f"member {key.member_id}" if key.member_id else "the whole team"
        )
    until = f", until {iso(key.expires_at)}" if key.expires_at else ""
    text = (
        f"created API key {key.id} for {scope}{until}:\n"
        f"{secret}\n"
        "Store it now: only its hash is kept, it cannot be shown again."
    )
    return key_view(key, secret), text


def _key_line(key: ApiKey) -> str:
    scope = "operator" if key.operator else key.member_id or "team"
    until = f"  expires {iso(key.expires_at)}" if key.expires_at else ""
    return f"{key.id}  {key.prefix}…  {scope}  created {iso(key.created_at)}{until}"


async def _admin_key_list(args: argparse.Namespace, store: Store) -> Result:
    """``admin key list``: a team's keys (or the operator's), without secrets."""
    owner = _key_owner(args)
    if owner:
        await _team(store, owner)
    keys = sorted(await store.list_api_keys(owner), key=lambda k: (k.created_at, k.id))
    text = "\n".join(_key_line(k) for k in keys) or "no API keys"
    return {"keys": [key_view(k) for k in keys]}, text


async def _admin_key_revoke(args: argparse.Namespace, store: Store) -> Result:
    """``admin key revoke``: the key stops working on every process within a second."""
    owner = _key_owner(args)
    if not await revoke_key(store, owner, args.key):
        whose = f"team {owner}" if owner else "the operator"
        raise NotFound(f"API key {args.key} does not exist for {whose}")
    return {"id": args.key, "revoked": True}, f"revoked API key {args.key}"


# -- jobs -----------------------------------------------------------------------------------
JOB_STATES = {"queued": "ready", "dead": "dead"}  # as the CLI names them → as the store does


def job_view(job: Job) -> dict[str, Any]:
    """A job as the admin CLI shows it."""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": "queued" if job.state == "ready" else job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": iso(job.run_at),
        "created_at": iso(job.created_at) if job.created_at else None,
        "last_error": job.last_error,
        "payload": job.payload,
    }


def _job_line(job: Job) -> str:
    """One job as a line of text."""
    view = job_view(job)
    line = (
        f"{job.id}  {job.kind}  {view['state']}  attempts {job.attempts}/{job.max_attempts}  "
        f"due {view['run_at']}"
    )
    return line + (f"  last error: {job.last_error}" if job.last_error else "")


async def _admin_jobs_list(args: argparse.Namespace, store: Store) -> Result:
    """``admin jobs list``: queued and dead jobs (``--state``, ``--kind``), and the kinds
    whose jobs wait for a process that handles them."""
    states = [args.state] if args.state else list(JOB_STATES)
    jobs: list[Job] = []
    for state in states:
        jobs += await store.list_jobs(JOB_STATES[state], args.kind, args.limit)
    parked = await store.parked_job_counts()
    if args.kind is not None:
        parked = {k: n for k, n in parked.items() if k == args.kind}
    lines = [_job_line(job) for job in jobs] or ["no jobs"]
    lines += [
        f"{n} {kind} job(s) wait for a process that handles kind {kind!r} "
        "(is its connector or extension configured?)"
        for kind, n in sorted(parked.items())
    ]
    obj = {"jobs": [job_view(job) for job in jobs], "waiting_for_handler": parked}
    return obj, "\n".join(lines)


async def _admin_jobs_retry(args: argparse.Namespace, store: Store, clock: Clock) -> Result:
    """``admin jobs retry``: a dead job runs again, due now, its attempts starting over."""
    job = await store.revive_job(args.job, clock.now())
    if job is None:
        found = await store.get_job(args.job)
        if found is None:
            raise NotFound(f"job {args.job} does not exist (finished jobs are removed)")
        state = job_view(found)["state"]
        raise Conflict(f"job {args.job} is {state}, not dead: only a dead job can be retried")
    text = f"job {job.id} ({job.kind}) is queued again, due now; its attempts start over"
    return job_view(job), text


# The commands that may create a store (an operator's first steps: a team, an operator
# key): every other one reads, or changes something that must exist already (a team, a
# member, a job), so a missing SQLite file is a mistaken configuration, not a store to
# create (opening an SQLite file creates it).
CREATES_STORE = frozenset({("team", "create")})


def creates_store(args: argparse.Namespace) -> bool:
    """Whether this admin command may start a new store."""
    if (args.object, args.action) in CREATES_STORE:
        return True
    return (args.object, args.action) == ("key", "create") and bool(
        getattr(args, "operator", False)
    )


def require_store(url: str) -> None:
    """Refuse an SQLite store whose file does not exist (``ConfigError``)."""
    if not url.startswith("sqlite://"):
        return
    path = url.removeprefix("sqlite://")
    if path in (":memory:", "/:memory:") or Path(path).exists():
        return
    raise ConfigError(
        f"gateway.store: {path} does not exist (nothing was created; only 'team create' "
        "and 'key create --operator' start a new store); name your gateway's configuration "
        "with --config FILE or $GATEWAY_CONFIG (the demo prints the command for its store)"
    )


async def run(args: argparse.Namespace, settings: Settings, clock: Clock | None = None) -> Result:
    """Run one ``admin`` command against the configured store (``clock``: the system's);
    an extension's command runs on a host whose storage roles are open."""
    if not creates_store(args):
        require_store(settings.store)
    command = extension_commands().get((args.object, args.action))
    if command is not None:
        rt = await open_runtime(settings, start_connectors=False)
        try:
            return await command.run(rt, args)
        finally:
            await rt.aclose()
    store = await open_store(settings.store)
    clock = clock or SystemClock()
    try:
        match (args.object, args.action):
            case ("team", "create"):
                return await _admin_team_create(args, store, clock, settings)
            case ("team", "show"):
                return await _admin_team_show(args, store, clock, settings)
            case ("member", "create"):
                return await _admin_member_create(args, store, clock)
            case ("member", "list"):
                return await _admin_member_list(args, store)
            case ("key", "create"):
                return await _admin_key_create(args, store, clock)
            case ("key", "list"):
                return await _admin_key_list(args, store)
            case ("key", "revoke"):
                return await _admin_key_revoke(args, store)
            case ("jobs", "list"):
                return await _admin_jobs_list(args, store)
            case ("jobs", "retry"):
                return await _admin_jobs_retry(args, store, clock)
        raise AssertionError(f"unhandled admin command {args.object} {args.action}")
    finally:
        await store.aclose()
