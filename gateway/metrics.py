"""Process metrics in the Prometheus text exposition format.

Counters and gauges are plain dictionaries rendered here. Latency histograms are
``prometheus_client``'s (its buckets, sums and exposition): ``bench/metrics_histogram.py``
measured an observation at about 2.5x the CPU of hand-rolled buckets, but that is about
half a microsecond per request, a few tenths of a percent of a send's CPU — below what
the ingest benchmarks can resolve — so the library's exposition wins (figures in
``bench/README.md``). Each series' child is looked up once and kept (``labels()`` on
every request cost as much again).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import disable_created_metrics as _no_created

# The ``*_created`` series say when a process first saw a label set: noise here.
_no_created()  # type: ignore[no-untyped-call]

Key = tuple[tuple[str, str], ...]


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
        self._values: dict[str, dict[Key, float]] = defaultdict(dict)
        self._registry = CollectorRegistry(auto_describe=False)
        self._histograms: dict[str, Histogram] = {}
        self._children: dict[tuple[str, Key], Any] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        """Declare a metric (``counter`` or ``gauge``) and its help text."""
        self._help[name] = (kind, text)

    def describe_histogram(self, name: str, text: str, labels: tuple[str, ...]) -> None:
        """Declare a latency histogram (seconds) with its help text and label names."""
        self._histograms[name] = Histogram(name, text, sorted(labels), registry=self._registry)

    def observe(self, name: str, key: Key, value: float) -> None:
        """Count ``value`` (seconds) into histogram ``name``; ``key``: its labels, sorted."""
        child = self._children.get((name, key))
        if child is None:
            child = self._children[(name, key)] = self._histograms[name].labels(
                *(v for _, v in key)
            )
        child.observe(value)

    def histogram(self, name: str, **labels: str) -> dict[str, float]:
        """One histogram series as cumulative counts by ``le``, with ``sum`` and ``count``
        (empty when never observed)."""
        out: dict[str, float] = {}
        for metric in self._registry.collect():
            for sample in metric.samples:
                own = {k: v for k, v in sample.labels.items() if k != "le"}
                if not sample.name.startswith(name) or own != labels:
                    continue
                suffix = sample.name.removeprefix(name)
                if suffix == "_bucket":
                    out[sample.labels["le"]] = sample.value
                elif suffix in ("_sum", "_count"):
                    out[suffix[1:]] = sample.value
        return out

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
        return "\n".join(lines) + "\n" + generate_latest(self._registry).decode()


def standard_metrics() -> Metrics:
    """A registry with the gateway's metrics declared."""
    m = Metrics()
    m.describe("gateway_http_requests_total", "counter", "HTTP requests by route and status.")
    m.describe("gateway_http_request_seconds_total", "counter", "Time spent serving requests.")
    m.describe_histogram(
        "gateway_http_request_duration_seconds",
        "Latency of requests by route (handler) and method.",
        ("handler", "method"),
    )
    m.describe_histogram(
        "gateway_job_duration_seconds",
        "Time a job's handler ran, by kind and outcome (done, retry, error).",
        ("kind", "outcome"),
    )
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
