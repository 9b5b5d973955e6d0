"""The run as a picture: throughput and latency percentiles over time, the kill marked.

matplotlib with the Agg backend (no display needed); three stacked panels sharing the time
axis: completed sales per second (and errors), p50/p99 of sale time and of order-create
latency per one-second window, and the switch's CPU. Gaps (seconds without a sample) stay
gaps rather than being drawn as zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen first

__all__ = ["write_chart"]


def _column(series: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float("nan") if row.get(key) is None else float(row[key]) for row in series]


def write_chart(
    path: Path, series: Sequence[Mapping[str, Any]], *, title: str, kill_at_s: float | None
) -> Path:
    """Write the PNG to ``path`` and return it."""
    t = [row["t_s"] for row in series]
    figure, (rate, latency, cpu) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    try:
        rate.plot(t, _column(series, "completed"), label="completed sales/s", color="tab:green")
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
        cpu.plot(t, _column(series, "cpu_pct"), label="switch CPU (% of a core)", color="gray")
        cpu.set_ylabel("CPU %")
        cpu.set_xlabel("seconds since the first arrival")
        for axes in (rate, latency, cpu):
            axes.grid(True, alpha=0.3)
            if kill_at_s is not None:
                axes.axvline(kill_at_s, color="red", linestyle="--", label="SIGKILL")
        rate.legend(loc="upper left", fontsize=8)
        cpu.legend(loc="upper left", fontsize=8)
        figure.suptitle(title)
        figure.tight_layout()
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path
