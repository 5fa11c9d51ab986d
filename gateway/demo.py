"""``gateway demo``: a throwaway gateway with a demo team, three members and an API key.

Everything lives in a temporary directory (an SQLite store, a blob directory and a
configuration file naming them, for ``gateway admin``) that is deleted when the demo
stops. ``create_demo`` does the setup on any store, so tests can check it without
serving. The carriers are simulators found through the ``gateway.simulators`` entry
points (``connectors.base.DemoCarrier``: the SMSC and the WhatsApp Cloud API), never
imported by name.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.base import DemoCarrier, DemoNumber, demo_carriers
from gateway.admin import create_member, create_team
from gateway.auth import create_key
from gateway.clock import Clock
from gateway.config import ConnectorConfig, Settings, extension_settings
from gateway.errors import ConfigError
from gateway.models import Addon, ApiKey, Channel, Member, Plan, Team
from gateway.numbers import normalize_landline, normalize_mobile
from gateway.process import open_runtime
from gateway.quota import euros
from gateway.runtime import Runtime
from gateway.store.base import Store

DEMO_TEAM = "Demo GmbH"
DEMO_PLAN = Plan.BUSINESS
DEMO_CREDIT_LIMIT_MICROS = 50 * 1_000_000  # 50 EUR
# The extensions' sections of the demo's configuration, as in a configuration file: webhook
# endpoints on this machine (a receiver at 127.0.0.1) are what a demo has.
DEMO_SECTIONS = {"webhooks": {"allow_private_targets": True}}


@dataclass(frozen=True, slots=True)
class DemoMember:
    """One member the demo creates."""

    name: str
    email: str
    mobile: str
    fax: str | None
    addons: frozenset[str]


DEMO_MEMBERS = (
    DemoMember(
        "Anna Schmidt",
        "anna.schmidt@example.com",
        "+4915112345671",
        "+4930123456701",
        frozenset({Addon.SMS, Addon.WHATSAPP, Addon.FAX}),
    ),
    DemoMember(
        "Ben Wagner", "ben.wagner@example.com", "+4915112345672", None, frozenset({Addon.SMS})
    ),
    DemoMember(
        "Clara Hoffmann",
        "clara.hoffmann@example.com",
        "+4915112345673",
        # A second fax member: Anna's fax to her number loops through the fax simulator
        # back to the gateway, so the demo shows a sent and a received fax (and its mail).
        "+4930123456703",
        frozenset({Addon.WHATSAPP, Addon.FAX}),
    ),
)


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What ``create_demo`` made; ``key`` is the team API key's secret."""

    team: Team
    members: tuple[Member, ...]
    api_key: ApiKey
    key: str


def demo_connectors() -> tuple[ConnectorConfig, ...]:
    """The connectors the demo runs with besides those of its carrier simulators."""
    return ()


def demo_numbers() -> tuple[DemoNumber, ...]:
    """The demo members' numbers, each with the channels its member uses it for."""
    mobile = {Channel.SMS.value, Channel.WHATSAPP.value}
    numbers = [DemoNumber(m.mobile, m.addons & mobile) for m in DEMO_MEMBERS]
    numbers += [
        DemoNumber(m.fax, frozenset({Channel.FAX.value}))
        for m in DEMO_MEMBERS
        if m.fax and Addon.FAX in m.addons
    ]
    return tuple(numbers)


def demo_settings(root: str | Path, host: str, port: int) -> Settings:
    """Settings of a demo whose store and blobs live under ``root``."""
    root = Path(root)
    return Settings(
        store=f"sqlite:///{root}/gateway.db",
        blobs=str(root / "blobs"),
        public_url=public_url(host, port),
        connectors=demo_connectors(),
        extensions=extension_settings(DEMO_SECTIONS),
    )


def public_url(host: str, port: int) -> str:
    """The URL a browser or curl on this machine reaches ``host:port`` at."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def create_demo(store: Store, clock: Clock, settings: Settings) -> DemoInfo:
    """Create the demo team (business plan, 50 EUR credit limit), its members and a key."""
    team = await create_team(
        store, clock, DEMO_TEAM, DEMO_PLAN.value, DEMO_CREDIT_LIMIT_MICROS, settings.region
    )
    members = []
    for spec in DEMO_MEMBERS:
        # The numbers are E.164 already; normalizing them checks they stay valid.
        mobile = normalize_mobile(spec.mobile, team.region)
        fax = normalize_landline(spec.fax, team.region) if spec.fax else None
        members.append(
            await create_member(
                store, clock, team.id, spec.name, spec.email, mobile, fax, spec.addons
            )
        )
    api_key, secret = await create_key(store, clock, team.id)
    return DemoInfo(team, tuple(members), api_key, secret)


def gateway_command() -> str:
    """The ``gateway`` command as a shell can run it from anywhere: the console script
    beside this Python (``.venv/bin/gateway`` after ``make run``), which need not be on
    ``PATH``."""
    script = Path(sys.executable).parent / "gateway"
    return shlex.quote(str(script)) if script.exists() else "gateway"


def write_config(settings: Settings, workdir: str | Path) -> Path:
    """A configuration file naming the demo's store and blobs (for ``gateway admin``)."""
    path = Path(workdir) / "gateway.toml"
    path.write_text(
        f"[gateway]\nstore = {json.dumps(settings.store)}\nblobs = {json.dumps(settings.blobs)}\n"
    )
    return path


def describe(info: DemoInfo, settings: Settings, workdir: str | None = None) -> str:
    """The banner's first part: URL, key, members, and commands to paste: send, read back,
    and (with ``workdir``) ``gateway admin`` on the demo's store."""
    url = settings.public_url
    auth = shlex.quote(f"Authorization: Bearer {info.key}")
    sender = next((m for m in info.members if Addon.SMS in m.addons and m.mobile), None)
    lines = [
        "Messaging gateway demo",
        "",
        f"  API          {url}/v1   (OpenAPI document: {url}/v1/openapi.json)",
        f"  Team         {info.team.name} ({info.team.id}), {info.team.plan} plan, "
        f"credit limit {euros(info.team.credit_limit_micros)} EUR",
        f"  API key      {info.key}",
        "               (a team key: send it as 'Authorization: Bearer <key>')",
    ]
    if workdir:
        lines.append(f"  Data         {workdir} (deleted when the demo stops)")
    lines += ["", "  Members"]
    for m in info.members:
        numbers = f"mobile {m.mobile}" + (f", fax {m.fax}" if m.fax else "")
        lines.append(f"    {m.name:<15} {m.id}  {numbers}; add-ons {', '.join(sorted(m.addons))}")
    lines += [
        "",
        "  Try it (curl is not in a minimal Debian: apt-get install -y curl)",
        f"    curl -s {url}/v1/quota -H {auth}",
    ]
    if sender is not None:
        others = [m for m in info.members if m is not sender and m.mobile]
        to = others[0].mobile if others else "+4915112345679"
        body = json.dumps(
            {"channel": "sms", "from": sender.mobile, "to": to, "text": "Hallo from the demo!"}
        )
        lines.append(
            f"    curl -s {url}/v1/messages -H {auth} -H 'Content-Type: application/json' "
            f"-H 'Idempotency-Key: demo-1' -d {shlex.quote(body)}"
        )
    lines += [
        "  Read back the messages and conversations",
        f"    curl -s {url}/v1/messages -H {auth}",
        f"    curl -s {url}/v1/conversations -H {auth}",
    ]
    if workdir:
        config = shlex.quote(str(Path(workdir) / "gateway.toml"))
        lines += [
            "  Administer the demo's store (another shell, while the demo runs)",
            f"    {gateway_command()} admin --config {config} team show {info.team.id}",
        ]
    if not settings.connectors:
        lines += [
            "",
            "  No carrier is connected in this demo yet: sending answers 422",
            "  channel_unavailable and nothing is queued.",
        ]
    lines.append("")
    return "\n".join(lines)


def banner(first: str, parts: list[str]) -> str:
    """The whole banner, printed in one piece: ``describe``'s part, the carriers' and the
    extensions' parts, and how to stop last."""
    text = "\n".join([first, *(p for p in parts if p)]).rstrip("\n")
    return text + "\n\n  Stop with Ctrl-C.\n"


def check_port(host: str, port: int) -> None:
    """Refuse a port already in use before anything is set up or printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot serve the demo on {host}:{port} ({exc.strerror}): pick another "
                f'port, e.g. make run DEMO_ARGS="--port 9000" (or gateway demo --port 9000)'
            ) from None


async def extension_demos(rt: Runtime, info: DemoInfo) -> list[str]:
    """Each installed extension's part of the demo (the portal's sign-ins …): its
    banner lines, set up for the demo members (the first is the team's admin)."""
    from gateway.extensions import extensions

    out = []
    for ext in extensions():
        text = await ext.demo(rt, info.members)
        if text:
            out.append(text)
    return out


async def run_demo(
    host: str, port: int, serve: Callable[[Runtime, str, int], Awaitable[None]]
) -> None:
    """Set up a throwaway demo with every installed carrier simulator, print how to use
    it, and ``serve`` it until stopped. A port in use is refused first (``ConfigError``)."""
    check_port(host, port)
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as workdir:
        settings = demo_settings(workdir, host, port)
        started: list[DemoCarrier] = []
        try:
            configs = []
            for carrier in demo_carriers():
                configs.append(await carrier.start(settings.public_url, demo_numbers()))
                started.append(carrier)
            settings = dataclasses.replace(settings, connectors=(*settings.connectors, *configs))
            rt = await open_runtime(settings)
            try:
                info = await create_demo(rt.store, rt.clock, settings)
                write_config(settings, workdir)
                await rt.wait_started()
                parts = [carrier.banner() for carrier in started]
                parts += await extension_demos(rt, info)
                # One write, after everything that logs while starting: no log line
                # lands inside the banner (the log goes to stderr).
                sys.stdout.write(banner(describe(info, settings, workdir), parts))
                sys.stdout.flush()
                await serve(rt, host, port)
            finally:
                await rt.aclose()
        finally:
            for carrier in reversed(started):
                await carrier.stop()
