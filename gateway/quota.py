"""The monthly ledger: included units, usage, overage and the team's credit limit.

Months are calendar months in the configured time zone (Europe/Berlin by default): a
message sent at 23:30 UTC on 31 March counts for April in Berlin. Unused units expire
at month end simply because each month has its own ledger lines.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from gateway.errors import ValidationError
from gateway.models import Channel, Charge, Member, Team
from gateway.store.base import Store, ledger_overage_micros
from gateway.units import Tariff

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def period_of(at: datetime, tz: ZoneInfo) -> str:
    """The ledger period (``YYYY-MM``) that ``at`` falls into in ``tz``."""
    return _period_of_quarter(int(at.timestamp()) // 900, tz)


@lru_cache(maxsize=64)
def _period_of_quarter(quarter: int, tz: ZoneInfo) -> str:
    # Every time zone's offset is a multiple of 15 minutes, so a month never starts
    # inside a quarter hour of UTC: the quarter decides the period (and is cached).
    return datetime.fromtimestamp(quarter * 900, tz).strftime("%Y-%m")


def check_period(text: str) -> str:
    """``text`` if it is a ``YYYY-MM`` period, else a validation error."""
    if not _PERIOD.match(text):
        raise ValidationError(f"period {text!r} is not YYYY-MM", field="period")
    return text


def euros(micros: int) -> str:
    """Micro-euros as a decimal EUR string with at least two decimals (``"0.09"``)."""
    value = Decimal(micros) / Decimal(1_000_000)
    text = format(value.normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def build_charge(
    tariff: Tariff, team: Team, member: Member, channel: Channel, units: int, period: str
) -> Charge:
    """The ledger charge of ``units`` on ``channel`` for ``member`` in ``period``."""
    return Charge(
        team_id=team.id,
        member_id=member.id,
        channel=channel.value,
        period=period,
        units=units,
        included=tariff.included[channel.value],
        overage_price_micros=tariff.overage_price_micros[channel.value],
        credit_limit_micros=team.credit_limit_micros,
        thresholds=tariff.thresholds,
    )


async def quota_report(
    store: Store, tariff: Tariff, team: Team, members: list[Member], period: str
) -> dict[str, Any]:
    """Per member and channel: included, used, overage, price; plus the team's totals."""
    lines, team_overage = await store.ledger(team.id, period)
    used = {(ln.member_id, ln.channel): ln.used for ln in lines}
    out_members = []
    for member in members:
        channels = {}
        for channel in Channel:
            n = used.get((member.id, channel.value), 0)
            included = tariff.included[channel.value]
            price = tariff.overage_price_micros[channel.value]
            channels[channel.value] = {
                "included": included,
                "used": n,
                "remaining": max(0, included - n),
                "overage": max(0, n - included),
                "overage_price": euros(price),
                "overage_cost": euros(ledger_overage_micros(n, included, price)),
            }
        out_members.append({"member_id": member.id, "name": member.name, "channels": channels})
    return {
        "period": period,
        "team_id": team.id,
        "currency": "EUR",
        "credit_limit": euros(team.credit_limit_micros),
        "overage_cost": euros(team_overage),
        "members": out_members,
    }
