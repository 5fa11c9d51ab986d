"""``gateway demo``: a throwaway gateway with a demo team, three members and an API key.

Everything lives in a temporary directory (an SQLite store and a blob directory) that is
deleted when the demo stops. ``create_demo`` does the setup on any store, so tests can
check it without serving.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.auth import create_key
from gateway.cli import create_member, create_team
from gateway.clock import Clock
from gateway.config import ConnectorConfig, Settings, extension_settings
from gateway.models import Addon, ApiKey, Member, Plan, Team
from gateway.numbers import normalize_landline, normalize_mobile
from gateway.quota import euros
from gateway.runtime import Runtime
from gateway.store.base import Store

if TYPE_CHECKING:
    from connectors.smpp.simulator import SmscSimulator
    from connectors.whatsapp.simulator import WhatsAppSimulator

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
        None,
        frozenset({Addon.WHATSAPP}),
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
    """The connectors the demo runs with."""
    # None yet: the built-in carrier simulators (SMSC, WhatsApp Cloud API, fax) are added
    # here by later issues, so that the demo can send and receive without a real carrier.
    return ()


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


def describe(info: DemoInfo, settings: Settings, workdir: str | None = None) -> str:
    """The banner the demo prints: URL, key, members and ready-to-paste curl commands."""
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
        "  Try it",
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
    if not settings.connectors:
        lines += [
            "",
            "  No carrier is connected in this demo yet: sending answers 422",
            "  channel_unavailable and nothing is queued.",
        ]
    lines += ["", "  Stop with Ctrl-C.", ""]
    return "\n".join(lines)


# -- WhatsApp: the Cloud API simulator (connectors/whatsapp/simulator.py) ----------------
WHATSAPP_CONNECTOR_ID = "whatsapp"
WHATSAPP_DEMO_CONTACT = "+4917612345678"


def whatsapp_phone_number_ids() -> dict[str, str]:
    """Made-up Meta phone_number_ids for the mobiles of the demo's WhatsApp members."""
    members = [m for m in DEMO_MEMBERS if Addon.WHATSAPP in m.addons]
    return {m.mobile: f"10000000000{i:04d}" for i, m in enumerate(members, start=1)}


async def start_whatsapp(settings: Settings) -> tuple[Settings, WhatsAppSimulator]:
    """Start the WhatsApp simulator on a free loopback port; returns ``settings`` with a
    ``whatsapp_cloud`` connector for the demo's WhatsApp members, and the simulator."""
    from connectors.whatsapp.simulator import WhatsAppSimulator

    hook = f"{settings.public_url}/hooks/{WHATSAPP_CONNECTOR_ID}/"
    sim = WhatsAppSimulator(numbers=whatsapp_phone_number_ids(), webhook_url=hook, status_delay=0.5)
    await sim.start("127.0.0.1", 0)
    config = ConnectorConfig(
        WHATSAPP_CONNECTOR_ID,
        "whatsapp_cloud",
        frozenset({"whatsapp"}),
        None,
        sim.connector_options(),
    )
    return dataclasses.replace(settings, connectors=(*settings.connectors, config)), sim


def whatsapp_banner(sim: WhatsAppSimulator) -> str:
    """How to use the simulated WhatsApp carrier from a shell."""
    business = next(iter(sim.numbers))
    inbound = json.dumps({"from": WHATSAPP_DEMO_CONTACT, "to": business, "text": "Hallo!"})
    lines = [
        "  WhatsApp     simulated Cloud API at " + sim.graph_url,
        "               (numbers: " + ", ".join(sim.numbers) + "; it posts signed",
        "               status webhooks and tracks the 24-hour window like Meta)",
        "    A contact writes (opens the 24-hour window for free-form answers):",
        f"    curl -s {sim.base_url}/_sim/inbound -H 'Content-Type: application/json' "
        f"-d {shlex.quote(inbound)}",
        '    Then answer with "channel": "whatsapp", "from": "' + business + '", '
        '"to": "' + WHATSAPP_DEMO_CONTACT + '".',
        "",
    ]
    return "\n".join(lines)


# -- end of WhatsApp ------------------------------------------------------------------------


# -- SMS: the SMSC simulator (connectors/smpp/simulator.py) -------------------------------
SMS_CONNECTOR_ID = "sms"
SMSC_SYSTEM_ID = "demo"
SMSC_PASSWORD = "demo"
SMSC_RECEIPT_DELAY = 1.0  # seconds until the simulated handset has the SMS


async def start_smsc(settings: Settings) -> tuple[Settings, SmscSimulator]:
    """Start the SMSC simulator on a free loopback port; returns ``settings`` with an
    ``smpp`` connector bound to it, and the simulator. An SMS to a demo member's mobile
    also comes back as an inbound SMS (the simulator loops the members' numbers)."""
    from connectors.smpp.simulator import SmscSimulator

    sim = SmscSimulator(
        host="127.0.0.1",
        port=0,
        system_id=SMSC_SYSTEM_ID,
        password=SMSC_PASSWORD,
        receipt_delay=SMSC_RECEIPT_DELAY,
        record=False,
        loop_numbers=[m.mobile for m in DEMO_MEMBERS],
    )
    await sim.start()
    options = {
        "host": "127.0.0.1",
        "port": sim.port,
        "system_id": SMSC_SYSTEM_ID,
        "password": SMSC_PASSWORD,
    }
    config = ConnectorConfig(SMS_CONNECTOR_ID, "smpp", frozenset({"sms"}), None, options)
    return dataclasses.replace(settings, connectors=(*settings.connectors, config)), sim


def smsc_banner(sim: SmscSimulator) -> str:
    """What the simulated SMS carrier does."""
    lines = [
        f"  SMS          simulated SMSC (SMPP 3.4) at 127.0.0.1:{sim.port}",
        f"               (delivery receipts after {SMSC_RECEIPT_DELAY:g} s; an SMS to a demo "
        "member's",
        "               mobile also arrives as an inbound SMS for that member)",
        "",
    ]
    return "\n".join(lines)


# -- end of SMS ---------------------------------------------------------------------------


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
    """Set up a throwaway demo, print how to use it, and ``serve`` it until stopped."""
    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as workdir:
        settings = demo_settings(workdir, host, port)
        settings, whatsapp = await start_whatsapp(settings)  # WhatsApp simulator
        settings, smsc = await start_smsc(settings)  # SMSC simulator
        try:
            rt = await Runtime.create(settings)
            try:
                info = await create_demo(rt.store, rt.clock, settings)
                await rt.wait_started()
                print(describe(info, settings, workdir), flush=True)
                print(smsc_banner(smsc), flush=True)
                print(whatsapp_banner(whatsapp), flush=True)
                for text in await extension_demos(rt, info):
                    print(text, flush=True)
                await serve(rt, host, port)
            finally:
                await rt.aclose()
        finally:
            await smsc.stop()
            await whatsapp.stop()
