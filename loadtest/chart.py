"""The run as a picture: throughput and latency percentiles over time, the kill marked.

matplotlib with the Agg backend (no display needed); three stacked panels sharing the time
axis: completed sales, shed customers and errors per second; p50/p99 of sale time and of
order-create latency per one-second window; the CPU of every process of the world, stacked
(``other``, the rest of the machine, on top), with the machine's total as a line. Gaps
(seconds without a sample) stay gaps rather than being drawn as zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import psutil

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen first

__all__ = ["write_chart"]


def _column(series: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float("nan") if row.get(key) is None else float(row[key]) for row in series]


def _cpu_panel(axes: Any, t: Sequence[int], series: Sequence[Mapping[str, Any]]) -> None:
    """Each component's CPU stacked, the switch at the bottom and ``other`` (the machine's
    rest) on top, so the stack reaches the machine's total, drawn as a line to check it."""
    names: list[str] = []
    for row in series:
        for name in row.get("cpu_pct_by_process") or {}:
            if name not in names:
                names.append(name)
    names.sort(key=lambda n: (n != "switch", n == "other", n))
    if names:
        nan = float("nan")  # a second without a sample: a gap, not a drop to zero
        stacks = [
            [
                nan if row.get("cpu_pct_by_process") is None
                else float(row["cpu_pct_by_process"].get(name, 0.0))
                for row in series
            ]
            for name in names
        ]  # fmt: skip
        axes.stackplot(t, stacks, labels=[f"{name} CPU" for name in names], alpha=0.8)
        cores = psutil.cpu_count() or 1
        machine = [v * cores for v in _column(series, "machine_cpu_pct")]
        axes.plot(t, machine, label="machine total", color="black", linewidth=0.8)
    else:
        axes.plot(t, _column(series, "cpu_pct"), label="switch CPU", color="gray")
    axes.set_ylabel("CPU (% of one core)")


def write_chart(
    path: Path, series: Sequence[Mapping[str, Any]], *, title: str, kill_at_s: float | None
) -> Path:
    """Write the PNG to ``path`` and return it."""
    t = [row["t_s"] for row in series]
    figure, (rate, latency, cpu) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    try:
        rate.plot(t, _column(series, "completed"), label="completed sales/s", color="tab:green")
        rate.plot(t, _column(series, "shed"), label="shed/s", color="tab:purple", linewidth=0.8)
        rate.plot(t, _column(series, "errors"), label="errors/s", color="tab:red", linewidth=0.8)
        rate.set_ylabel("per second")
        latency.plot(t, _column(series, "sale_p50_s"), label="sale p50 (s)", color="tab:blue")
        latency.plot(t, _column(series, "sale_p99_s"), label="sale p99 (s)", color="navy")
        create = latency.twinx()
        create.plot(
            t, _column(series, "create_p50_ms"), label="create p50 (ms)", color="tab:orange"
        )
        create.plot(t, _column(series, "create_p99_ms"), label="create p99 (ms)", color="brown")
        latency.set_ylabel("sale time (s)")
        create.set_ylabel("create latency (ms)")
        handles = latency.get_legend_handles_labels()
        more = create.get_legend_handles_labels()
        latency.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8)
        _cpu_panel(cpu, t, series)
        cpu.set_xlabel("seconds since the first arrival")
        for axes in (rate, latency, cpu):
            axes.grid(True, alpha=0.3)
            if kill_at_s is not None:
                axes.axvline(kill_at_s, color="red", linestyle="--", label="SIGKILL")
        rate.legend(loc="upper left", fontsize=8)
        cpu.legend(loc="upper left", fontsize=7, ncol=3)
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path
