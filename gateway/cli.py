"""The ``gateway`` command: ``serve``, ``worker``, ``demo`` and ``admin …``.

``serve`` runs the REST API together with job workers (``--no-workers`` or
``workers = 0``: the API only, for replicas beside workers), ``worker`` runs job workers only
(scale them separately in production), ``demo`` serves a throwaway gateway with a demo
team, and ``admin`` edits the directory (teams, members, API keys) and the job queue
directly in the configured store (``gateway.admin``). Errors print ``error: <message>``
on stderr and exit 2 (configuration) or 1 (anything else); ``--json`` makes every
``admin`` command print one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sqlite3
import sys
from decimal import Decimal, InvalidOperation

from redis.exceptions import RedisError

from gateway.admin import JOB_STATES
from gateway.admin import run as run_admin
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError, GatewayError
from gateway.extensions import extension_commands
from gateway.models import Addon, Plan
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.serving import on_signals, serve_until_signal

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
GRACE_SECONDS = 5
JOBS_LIMIT = 100
log = logging.getLogger("gateway")


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


def _count(text: str) -> int:
    """A positive whole number."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
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
    serve.add_argument(
        "--no-workers",
        action="store_true",
        dest="no_workers",
        help="serve the API only, run no jobs (API replicas beside `gateway worker`; "
        "also `workers = 0`)",
    )

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
    m_create.add_argument(
        "--mobile", help="mobile number (SMS, the SMS fallback, and WhatsApp unless --whatsapp)"
    )
    m_create.add_argument(
        "--whatsapp", help="the WhatsApp number, mobile or landline (default: the mobile number)"
    )
    m_create.add_argument("--fax", help="landline number for fax")
    m_create.add_argument(
        "--addons", default="", help="comma-separated add-ons: " + ",".join(a.value for a in Addon)
    )
    m_list = member_cmds.add_parser("list", parents=[admin_common], help="a team's members")
    m_list.add_argument("--team", required=True, metavar="TEAM_ID")

    key = objects.add_parser("key", parents=[admin_common], help="API keys")
    key_cmds = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    k_create = key_cmds.add_parser(
        "create", parents=[admin_common], help="create an API key (the secret is shown once)"
    )
    k_owner = k_create.add_mutually_exclusive_group(required=True)
    k_owner.add_argument("--team", metavar="TEAM_ID")
    k_owner.add_argument(
        "--operator", action="store_true", help="an operator key (GET /v1/health), no team"
    )
    k_create.add_argument("--member", metavar="MEMBER_ID", help="limit the key to one member")
    k_create.add_argument(
        "--expires",
        metavar="WHEN",
        help="stop working then: an RFC 3339 time (2027-01-31T00:00:00Z) or a duration "
        "from now (90d, 12h, 30m)",
    )
    k_list = key_cmds.add_parser(
        "list", parents=[admin_common], help="a team's API keys (or the operator's)"
    )
    k_list_owner = k_list.add_mutually_exclusive_group(required=True)
    k_list_owner.add_argument("--team", metavar="TEAM_ID")
    k_list_owner.add_argument("--operator", action="store_true", help="the operator keys")
    k_revoke = key_cmds.add_parser(
        "revoke", parents=[admin_common], help="revoke an API key (on every process within 1 s)"
    )
    k_revoke_owner = k_revoke.add_mutually_exclusive_group(required=True)
    k_revoke_owner.add_argument("--team", metavar="TEAM_ID")
    k_revoke_owner.add_argument("--operator", action="store_true", help="an operator key")
    k_revoke.add_argument("key", metavar="KEY_ID")

    jobs = objects.add_parser("jobs", parents=[admin_common], help="the job queue")
    job_cmds = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    j_list = job_cmds.add_parser(
        "list", parents=[admin_common], help="queued and dead jobs, oldest due first"
    )
    j_list.add_argument("--state", choices=list(JOB_STATES), help="only queued or only dead jobs")
    j_list.add_argument("--kind", metavar="KIND", help="only jobs of this kind")
    j_list.add_argument(
        "--limit", type=_count, default=JOBS_LIMIT, help=f"per state, default {JOBS_LIMIT}"
    )
    j_retry = job_cmds.add_parser(
        "retry", parents=[admin_common], help="run a dead job again (its attempts start over)"
    )
    j_retry.add_argument("job", metavar="JOB_ID")
    # Extensions' commands (the portal's ``member set-password`` …), found by entry point.
    actions = {"team": team_cmds, "member": member_cmds, "key": key_cmds, "jobs": job_cmds}
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


# -- serving -----------------------------------------------------------------------------
async def serve_runtime(rt: Runtime, host: str, port: int, *, workers: bool = True) -> None:
    """Serve the API on ``host:port`` until SIGINT/SIGTERM, with job workers unless
    ``workers`` is False or the settings say ``workers = 0``."""
    from gateway.api.app import create_app

    workers = workers and rt.settings.workers > 0
    # Open event streams (the portal's) would hold shutdown up for ever: they get a few
    # seconds to end, then are cut (browsers reconnect, to another process if need be).
    await serve_until_signal(
        create_app(rt, workers=workers),
        host,
        port,
        timeout_graceful_shutdown=GRACE_SECONDS,
        timeout_keep_alive=rt.settings.keep_alive_seconds,
    )


async def _serve(settings: Settings, host: str, port: int, workers: bool) -> None:
    """``gateway serve`` (``workers`` False: ``--no-workers``)."""
    workers = workers and settings.workers > 0
    rt = await open_runtime(settings, sends=workers)
    try:
        if not workers:
            log.info("serving the API only: this process runs no jobs")
        await serve_runtime(rt, host, port, workers=workers)
    finally:
        await rt.aclose()


async def _worker(settings: Settings) -> None:
    """``gateway worker``: run job workers until SIGINT/SIGTERM."""
    if settings.workers < 1:
        raise ConfigError("gateway.workers: `gateway worker` needs at least 1 (it runs jobs only)")
    rt = await open_runtime(settings)
    try:
        stop = asyncio.Event()

        def on_signal(sig: int) -> None:
            log.info("received %s, finishing jobs in flight", signal.Signals(sig).name)
            stop.set()

        jobs = worker(rt)
        with on_signals(on_signal):
            log.info("worker started (%d loops, store %s)", settings.workers, settings.store)
            await jobs.run(stop)
    finally:
        await rt.aclose()


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
            asyncio.run(_serve(settings, args.host, args.port, not args.no_workers))
        elif args.command == "worker":
            _logging()
            asyncio.run(_worker(settings))
        else:
            obj, text = asyncio.run(run_admin(args, settings))
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
