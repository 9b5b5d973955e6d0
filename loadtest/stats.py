"""What the load test measured, as it measured it: HDR histograms and one-second windows.

Latencies are recorded in microseconds into :class:`hdrh.histogram.HdrHistogram` (3
significant digits, up to an hour), once for the whole run and once per one-second window of
the run, so the chart can show percentiles over time without keeping every sample. Errors are
counted by kind. Pure: the caller supplies every time (seconds since the start of the run).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hdrh.histogram import HdrHistogram

__all__ = [
    "CALLBACK_TO_AUTHORIZED",
    "CREATE",
    "LAG",
    "SALE",
    "ProcessSample",
    "Recorder",
    "ResourceSample",
    "Window",
    "new_histogram",
    "percentiles",
    "process_cpu",
    "sustained_rate",
]

MAX_US: Final = 3_600_000_000  # an hour
DIGITS: Final = 3
QUANTILES: Final = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_US, DIGITS)


def _us(seconds: float) -> int:
    return min(MAX_US, max(1, round(seconds * 1e6)))


def percentiles(histogram: HdrHistogram, scale: float = 1e-6) -> dict[str, float | None]:
    """p50/p90/p99/p99.9/max/mean of ``histogram`` (recorded in µs) times ``scale``
    (seconds by default); None for an empty histogram."""
    if histogram.get_total_count() == 0:
        return {"p50": None, "p90": None, "p99": None, "p999": None, "max": None, "mean": None}
    out: dict[str, float | None] = {
        name: histogram.get_value_at_percentile(q) * scale for name, q in QUANTILES.items()
    }
    out["max"] = histogram.get_max_value() * scale
    out["mean"] = histogram.get_mean_value() * scale
    return out


# The latencies the load test records:
SALE: Final = "sale"  # scheduled arrival -> the switch completed the sale
CREATE: Final = "create"  # POST /v1/orders (or /pay) sent -> answered
LAG: Final = "lag"  # scheduled arrival -> the request actually sent (the generator's own delay)
CALLBACK_TO_AUTHORIZED: Final = "callback_to_authorized"  # server side, after the run
NAMES: Final = (SALE, CREATE, LAG, CALLBACK_TO_AUTHORIZED)
WINDOWED: Final = (SALE, CREATE)


@dataclass(slots=True)
class Window:
    """One second of the run: sales completed in it, and the windowed latencies."""

    second: int
    completed: int = 0
    errors: int = 0
    accepted: int = 0  # orders the switch created
    shed: int = 0  # customers the switch turned away (503 overloaded)
    latencies: dict[str, HdrHistogram] = field(default_factory=dict)

    def record(self, name: str, seconds: float) -> None:
        histogram = self.latencies.get(name)
        if histogram is None:
            histogram = self.latencies[name] = new_histogram()
        histogram.record_value(_us(seconds))

    def quantile_s(self, name: str, q: float) -> float | None:
        histogram = self.latencies.get(name)
        if histogram is None or histogram.get_total_count() == 0:
            return None
        value: float = histogram.get_value_at_percentile(q) * 1e-6
        return value


@dataclass(frozen=True, slots=True)
class ResourceSample:
    t_s: float
    cpu_pct: float  # of one core (200 = two cores busy)
    rss_mb: float


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One second of the whole machine: CPU seconds each component of the world used in
    ``interval_s`` (``other``: everything else on the machine), and the machine's own
    busy share (``psutil.cpu_percent``: 100 = every core busy)."""

    t_s: float
    interval_s: float
    cpu_s: Mapping[str, float]
    rss_mb: Mapping[str, float]
    machine_pct: float

    def cpu_pct(self, name: str) -> float:
        """``name``'s CPU in percent of one core over the interval."""
        return 100.0 * self.cpu_s.get(name, 0.0) / self.interval_s if self.interval_s else 0.0


class Recorder:
    """Every figure of one run. Mutable; one per run, fed by the driver and the sampler."""

    def __init__(self) -> None:
        self.histograms: dict[str, HdrHistogram] = {name: new_histogram() for name in NAMES}
        self.windows: dict[int, Window] = {}
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()  # terminal order states, and "no_sale" kinds
        self.resources: list[ResourceSample] = []
        self.processes: list[ProcessSample] = []
        self.arrived = 0
        self.accepted = 0
        self.shed = 0
        self.completed = 0
        self.volume_ml = 0

    def window(self, t_s: float) -> Window:
        second = max(0, math.floor(t_s))
        found = self.windows.get(second)
        if found is None:
            found = self.windows[second] = Window(second)
        return found

    def latency(self, name: str, seconds: float, at_s: float | None = None) -> None:
        """Record one latency; with ``at_s`` also in that second's window."""
        self.histograms[name].record_value(_us(seconds))
        if at_s is not None and name in WINDOWED:
            self.window(at_s).record(name, seconds)

    def sale_completed(self, at_s: float, sale_s: float, volume_ml: int) -> None:
        self.completed += 1
        self.volume_ml += volume_ml
        self.window(at_s).completed += 1
        self.latency(SALE, sale_s, at_s)

    def order_accepted(self, at_s: float) -> None:
        self.accepted += 1
        self.window(at_s).accepted += 1

    def customer_shed(self, at_s: float) -> None:
        self.shed += 1
        self.window(at_s).shed += 1

    def error(self, kind: str, at_s: float) -> None:
        self.errors[kind] += 1
        self.window(at_s).errors += 1

    def sample(self, sample: ResourceSample) -> None:
        self.resources.append(sample)

    def sample_processes(self, sample: ProcessSample) -> None:
        self.processes.append(sample)

    def series(self, seconds: int) -> list[dict[str, Any]]:
        """Per second 0..seconds-1 (and any later second that saw something): completed
        sales, accepted and shed orders, errors, p50/p99 of sale time and create latency, the
        switch's CPU % and RSS, every component's CPU % and the machine's."""
        last = max([seconds - 1, *self.windows])
        cpu: dict[int, ResourceSample] = {}
        for sample in self.resources:
            cpu.setdefault(max(0, math.floor(sample.t_s)), sample)
        machine: dict[int, ProcessSample] = {}
        for whole in self.processes:
            machine.setdefault(max(0, math.floor(whole.t_s)), whole)
        rows = []
        for second in range(last + 1):
            w = self.windows.get(second) or Window(second)
            r = cpu.get(second)
            m = machine.get(second)
            rows.append(
                {
                    "t_s": second,
                    "completed": w.completed,
                    "accepted": w.accepted,
                    "shed": w.shed,
                    "errors": w.errors,
                    "sale_p50_s": w.quantile_s(SALE, 50.0),
                    "sale_p99_s": w.quantile_s(SALE, 99.0),
                    "create_p50_ms": _ms(w.quantile_s(CREATE, 50.0)),
                    "create_p99_ms": _ms(w.quantile_s(CREATE, 99.0)),
                    "cpu_pct": None if r is None else r.cpu_pct,
                    "rss_mb": None if r is None else r.rss_mb,
                    "machine_cpu_pct": None if m is None else m.machine_pct,
                    "cpu_pct_by_process": None
                    if m is None
                    else {name: round(m.cpu_pct(name), 1) for name in m.cpu_s},
                }
            )
        return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def sustained_rate(series: Iterable[Mapping[str, Any]], start_s: int, end_s: int) -> float:
    """Completed sales per second over the seconds [start_s, end_s) of ``series``."""
    span = max(1, end_s - start_s)
    return float(sum(row["completed"] for row in series if start_s <= row["t_s"] < end_s)) / span


def process_cpu(samples: Sequence[ProcessSample]) -> tuple[dict[str, float], dict[str, float]]:
    """Per component over ``samples``: the mean CPU in percent of one core, and the CPU
    seconds used in all (a component missing from a sample, e.g. the switch while it is
    down after a kill, counts as idle in that second)."""
    names = sorted({name for sample in samples for name in sample.cpu_s})
    wall = sum(sample.interval_s for sample in samples)
    used = {name: sum(sample.cpu_s.get(name, 0.0) for sample in samples) for name in names}
    mean = {name: 100.0 * used[name] / wall if wall else 0.0 for name in names}
    return mean, used
