"""The quota of this month and the last 12, per channel: the numbers and an SVG bar chart
laid out here (the template only draws the rectangles; no script, no inline style)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import Channel
from gateway.store.base import Store
from gateway.units import Tariff

MONTHS = 13  # this month and the 12 before it
WIDTH, HEIGHT = 520, 160
LEFT, BOTTOM, TOP = 8, 22, 8


def periods(current: str, count: int = MONTHS) -> list[str]:
    """``count`` periods ending with ``current`` (``YYYY-MM``), oldest first."""
    year, month = int(current[:4]), int(current[5:7])
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return list(reversed(out))


@dataclass(slots=True)
class Month:
    """One channel's usage in one month."""

    period: str
    included: int
    used: int

    @property
    def overage(self) -> int:
        """Units above the included ones."""
        return max(0, self.used - self.included)

    @property
    def within(self) -> int:
        """Units of the included ones used."""
        return min(self.used, self.included)


@dataclass(slots=True)
class Bar:
    """A month's bar: the included part and the overage stacked on it."""

    month: Month
    x: float
    width: float
    within_y: float
    within_h: float
    over_y: float
    over_h: float
    label_x: float


@dataclass(slots=True)
class ChannelChart:
    """One channel's months, laid out."""

    channel: str
    months: list[Month]
    bars: list[Bar]
    included_y: float
    scale_max: int


def layout(channel: str, months: list[Month]) -> ChannelChart:
    """Bars scaled so that the largest of usage and the included amount fits."""
    top = max([m.used for m in months] + [m.included for m in months] + [1])
    plot = HEIGHT - BOTTOM - TOP
    step = (WIDTH - LEFT) / len(months)
    width = step * 0.7
    bars = []
    for i, m in enumerate(months):
        x = LEFT + i * step + (step - width) / 2
        within_h = plot * m.within / top
        over_h = plot * m.overage / top
        base = HEIGHT - BOTTOM
        bars.append(
            Bar(
                m,
                round(x, 1),
                round(width, 1),
                round(base - within_h, 1),
                round(within_h, 1),
                round(base - within_h - over_h, 1),
                round(over_h, 1),
                round(x + width / 2, 1),
            )
        )
    included = months[-1].included if months else 0
    included_y = round(HEIGHT - BOTTOM - plot * included / top, 1)
    return ChannelChart(channel, months, bars, included_y, top)


async def usage(
    store: Store, tariff: Tariff, team_id: str, member_id: str, current: str
) -> list[ChannelChart]:
    """Per channel, the member's usage over the 13 months."""
    used: dict[tuple[str, str], int] = {}
    for period in periods(current):
        lines, _ = await store.ledger(team_id, period)
        for line in lines:
            if line.member_id == member_id:
                used[(period, line.channel)] = line.used
    out = []
    for channel in Channel:
        months = [
            Month(p, tariff.included.get(channel.value, 0), used.get((p, channel.value), 0))
            for p in periods(current)
        ]
        out.append(layout(channel.value, months))
    return out
