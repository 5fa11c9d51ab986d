"""The ``gateway`` command: ``serve``, ``worker``, ``demo`` and ``admin …``.

``serve`` runs the REST API together with job workers, ``worker`` runs job workers only
(scale them separately in production), ``demo`` serves a throwaway gateway with a demo
team, and ``admin`` edits the directory (teams, members, API keys) directly in the
configured store. Errors print ``error: <message>`` on stderr and exit 2 (configuration)
or 1 (anything else); ``--json`` makes every ``admin`` command print one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Generator, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers
import uvicorn
from redis.exceptions import RedisError

from gateway.auth import create_key
from gateway.clock import Clock, SystemClock
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, Forbidden, GatewayError, NotFound, ValidationError
from gateway.extensions import AdminCommand, extensions
from gateway.ids import new_id
from gateway.models import Addon, ApiKey, Member, Plan, Team, iso
from gateway.numbers import normalize_landline, normalize_mobile
from gateway.quota import euros, period_of, quota_report
from gateway.runtime import Runtime
from gateway.store import open_store
from gateway.store.base import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
log = logging.getLogger("gateway")

# What an admin command hands back: the JSON object and the readable text.
Result = tuple[dict[str, Any], str]


# -- argument parsing --------------------------------------------------------------------
def _euro_amount(text: str) -> int:
    """An ``--credit-limit`` value in EUR → micro-euros."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in EUR") from None
    if not amount.is_finite() or amount < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a non-negative amount in EUR")
    return int(amount * 1_000_000)


def _port(text: str) -> int:
    """A TCP port number."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gateway`` command (also used to check compose.yaml)."""
    # --config and --json are accepted on every (sub)command; SUPPRESS keeps a value given
    # before the subcommand from being reset by the subcommand's own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML configuration file (default: $GATEWAY_CONFIG, else built-in defaults)",
    )
    admin_common = argparse.ArgumentParser(add_help=False, parents=[common])
    admin_common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print exactly one JSON object instead of text",
    )

    parser = argparse.ArgumentParser(
        prog="gateway", description="SMS, WhatsApp and fax gateway with per-member quotas."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the REST API and workers")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")

    commands.add_parser("worker", parents=[common], help="run job workers only")

    demo = commands.add_parser(
        "demo", help="serve a throwaway gateway with a demo team, members and API key"
    )
    demo.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    demo.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")

    admin = commands.add_parser(
        "admin", parents=[admin_common], help="manage teams, members and API keys"
    )
    objects = admin.add_subparsers(dest="object", required=True, metavar="OBJECT")

    team = objects.add_parser("team", parents=[admin_common], help="teams")
    team_cmds = team.add_subparsers(dest="action", required=True, metavar="ACTION")
    t_create = team_cmds.add_parser("create", parents=[admin_common], help="create a team")
    t_create.add_argument("--name", required=True)
    t_create.add_argument(
        "--plan",
        choices=[p.value for p in Plan],
        default=Plan.STARTER.value,
        help="default starter",
    )
    t_create.add_argument(
        "--credit-limit",
        metavar="EUR",
        type=_euro_amount,
        default=0,
        dest="credit_limit",
        help="monthly overage the team may run up, in EUR (default 0: no overage)",
    )
    t_create.add_argument(
        "--region",
        help="region for national-format numbers, e.g. DE (default: gateway.region)",
    )
    t_show = team_cmds.add_parser(
        "show", parents=[admin_common], help="a team, its members and this month's usage"
    )
    t_show.add_argument("team", metavar="TEAM_ID")

    member = objects.add_parser("member", parents=[admin_common], help="team members")
    member_cmds = member.add_subparsers(dest="action", required=True, metavar="ACTION")
    m_create = member_cmds.add_parser("create", parents=[admin_common], help="add a member")
    m_create.add_argument("--team", required=True, metavar="TEAM_ID")
    m_create.add_argument("--name", required=True)
    m_create.add_argument("--email", required=True)
    m_create.add_argument("--mobile", help="mobile number (SMS and WhatsApp)")
    m_create.add_argument("--fax", help="landline number for fax")
    m_create.add_argument(
        "--addons", default="", help="comma-separated add-ons: " + ",".join(a.value for a in Addon)
    )
    m_list = member_cmds.add_parser("list", parents=[admin_common], help="a team's members")
    m_list.add_argument("--team", required=True, metavar="TEAM_ID")

    key = objects.add_parser("key", parents=[admin_common], help="API keys")
    actions = {"team": team_cmds, "member": member_cmds}
    key_cmds = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    k_create = key_cmds.add_parser(
        "create", parents=[admin_common], help="create an API key (the secret is shown once)"
    )
    k_create.add_argument("--team", required=True, metavar="TEAM_ID")
    k_create.add_argument("--member", metavar="MEMBER_ID", help="limit the key to one member")
    actions["key"] = key_cmds
    # Extensions' commands (the portal's ``member set-password`` …), found by entry point.
    for command in extension_commands().values():
        if command.object not in actions:
            extra = objects.add_parser(command.object, parents=[admin_common], help=command.object)
            actions[command.object] = extra.add_subparsers(
                dest="action", required=True, metavar="ACTION"
            )
        sub = actions[command.object].add_parser(
            command.action, parents=[admin_common], help=command.help
        )
        command.arguments(sub)
    return parser


def extension_commands() -> dict[tuple[str, str], AdminCommand]:
    """The installed extensions' admin commands by (object, action)."""
    return {(c.object, c.action): c for ext in extensions() for c in ext.admin_commands()}


# -- serving -----------------------------------------------------------------------------
class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the caller, so that the runtime is
    closed after a SIGTERM instead of the process dying on uvicorn's re-raised signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Do not touch signal handlers (``serve_runtime`` installs its own)."""
        yield


@contextlib.contextmanager
def _on_signals(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(signum)`` on SIGINT/SIGTERM while the block runs."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, callback, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def serve_runtime(rt: Runtime, host: str, port: int) -> None:
    """Serve the API with job workers on ``host:port`` until SIGINT/SIGTERM."""
    from gateway.api.app import create_app

    app = create_app(rt, workers=True)
    # Open event streams (the portal's) would hold shutdown up for ever: they get a few
    # seconds to end, then are cut (browsers reconnect to another process).
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", log_level="info", timeout_graceful_shutdown=5
    )
    server = _Server(config)

    def stop(sig: int) -> None:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True  # a second Ctrl-C: do not wait for open connections
        server.should_exit = True

    with _on_signals(stop):
        await server.serve()


async def _serve(settings: Settings, host: str, port: int) -> None:
    """``gateway serve``."""
    rt = await Runtime.create(settings)
    try:
        await serve_runtime(rt, host, port)
    finally:
        await rt.aclose()


async def _worker(settings: Settings) -> None:
    """``gateway worker``: run job workers until SIGINT/SIGTERM."""
    from gateway.jobs import Worker

    rt = await Runtime.create(settings)
    try:
        stop = asyncio.Event()

        def on_signal(sig: int) -> None:
            log.info("received %s, finishing jobs in flight", signal.Signals(sig).name)
            stop.set()

        with _on_signals(on_signal):
            log.info("worker started (%d loops, store %s)", settings.workers, settings.store)
            await Worker(rt).run(stop)
    finally:
        await rt.aclose()


# -- admin -------------------------------------------------------------------------------
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
) -> Member:
    """Create an active member: numbers normalized in the team's region, plan cap enforced."""
    team = await _team(store, team_id)
    name, email = name.strip(), email.strip()
    if not name:
        raise ValidationError("the member name must not be empty", field="name")
    if "@" not in email.strip("@"):
        raise ValidationError(f"{email!r} is not an email address", field="email")
    e164_mobile = normalize_mobile(mobile, team.region) if mobile else None
    e164_fax = normalize_landline(fax, team.region) if fax else None
    if Addon.FAX in addons and e164_fax is None:
        raise ValidationError("the fax add-on needs a fax number (--fax)", field="addons")
    if addons & {Addon.SMS, Addon.WHATSAPP} and e164_mobile is None:
        raise ValidationError(
            "the sms and whatsapp add-ons need a mobile number (--mobile)", field="addons"
        )
    member = Member(
        new_id("mem"), team.id, name, email, e164_mobile, e164_fax, addons, True, clock.now()
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
    )
    return member_view(member), f"created member {_member_line(member)}"


async def _admin_member_list(args: argparse.Namespace, store: Store) -> Result:
    """``admin member list``."""
    team = await _team(store, args.team)
    members = await store.list_members(team.id)
    text = "\n".join(_member_line(m) for m in members) or f"team {team.id} has no members"
    return {"members": [member_view(m) for m in members]}, text


def key_view(key: ApiKey, secret: str) -> dict[str, Any]:
    """A just-created API key, with its secret (shown this once)."""
    return {
        "id": key.id,
        "team_id": key.team_id,
        "member_id": key.member_id,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "key": secret,
    }


async def _admin_key_create(args: argparse.Namespace, store: Store, clock: Clock) -> Result:
    """``admin key create``: the secret is printed once; only its hash is stored."""
    key, secret = await create_key(store, clock, args.team, args.member)
    scope = f"member {key.member_id}" if key.member_id else "the whole team"
    text = (
        f"created API key {key.id} for team {key.team_id} ({scope}):\n"
        f"{secret}\n"
        "Store it now: only its hash is kept, it cannot be shown again."
    )
    return key_view(key, secret), text


async def _extension_admin(
    command: AdminCommand, args: argparse.Namespace, settings: Settings
) -> Result:
    """Run an extension's admin command on a runtime (its storage roles open)."""
    rt = await Runtime.create(settings, start_connectors=False)
    try:
        return await command.run(rt, args)
    finally:
        await rt.aclose()


async def _admin(args: argparse.Namespace, settings: Settings) -> Result:
    """Run one ``admin`` command against the configured store."""
    command = extension_commands().get((args.object, args.action))
    if command is not None:
        return await _extension_admin(command, args, settings)
    store = await open_store(settings.store)
    clock = SystemClock()
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
        raise AssertionError(f"unhandled admin command {args.object} {args.action}")
    finally:
        await store.aclose()


# -- entry point -------------------------------------------------------------------------
def _logging() -> None:
    """Log INFO and above to stderr (long-running commands)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the ``gateway`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "demo":
            from gateway.demo import run_demo

            _logging()
            asyncio.run(run_demo(args.host, args.port, serve_runtime))
            return 0
        settings = load_settings(getattr(args, "config", None))
        if args.command == "serve":
            _logging()
            asyncio.run(_serve(settings, args.host, args.port))
        elif args.command == "worker":
            _logging()
            asyncio.run(_worker(settings))
        else:
            obj, text = asyncio.run(_admin(args, settings))
            print(json.dumps(obj, indent=2, ensure_ascii=False) if as_json else text)
        return 0
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except (OSError, RedisError, sqlite3.Error) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
