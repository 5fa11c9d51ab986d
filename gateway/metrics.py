"""Process metrics in the Prometheus text exposition format (no client library needed)."""

from __future__ import annotations

from collections import defaultdict


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    """Counters and gauges with labels; ``render()`` gives the ``/metrics`` body."""

    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)

    def describe(self, name: str, kind: str, text: str) -> None:
        """Declare a metric (``counter`` or ``gauge``) and its help text."""
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        key = tuple(sorted(labels.items()))
        series = self._values[name]
        series[key] = series.get(key, 0.0) + amount

    def add(self, name: str, key: tuple[tuple[str, str], ...], amount: float = 1.0) -> None:
        """Add to a counter whose label ``key`` is already sorted (the hot-path form)."""
        series = self._values[name]
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self._values[name][tuple(sorted(labels.items()))] = float(value)

    def clear(self, name: str) -> None:
        """Forget every series of a gauge (before setting the ones that still exist)."""
        self._values.pop(name, None)

    def value(self, name: str, **labels: str) -> float:
        """The current value of one series (0 when never touched)."""
        return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        """The text exposition format, version 0.0.4."""
        lines = []
        for name in sorted(set(self._help) | set(self._values)):
            kind, text = self._help.get(name, ("untyped", name))
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            for key, value in sorted(self._values.get(name, {}).items()):
                number = int(value) if value.is_integer() else value
                lines.append(f"{name}{_labels(key)} {number}")
        return "\n".join(lines) + "\n"


def standard_metrics() -> Metrics:
    """A registry with the gateway's metrics declared."""
    m = Metrics()
    m.describe("gateway_http_requests_total", "counter", "HTTP requests by route and status.")
    m.describe("gateway_http_request_seconds_total", "counter", "Time spent serving requests.")
    m.describe("gateway_messages_accepted_total", "counter", "Outbound messages accepted.")
    m.describe("gateway_messages_received_total", "counter", "Inbound messages stored.")
    m.describe("gateway_sends_total", "counter", "Send attempts by connector and outcome.")
    m.describe("gateway_jobs", "gauge", "Jobs in the queue by state.")
    m.describe(
        "gateway_jobs_parked",
        "gauge",
        "Due jobs waiting for a process that handles their kind (a worker without a "
        "handler set them aside), by kind; handled: whether this process has one.",
    )
    m.describe("gateway_connector_up", "gauge", "1 when a connector can send.")
    return m
