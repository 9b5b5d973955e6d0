"""The demo's summary: what was sold and paid, through which channels, at what cost, how fast.

Figures come from the switch's own database (the orders as the switch booked them), fees from
the channels' fee contracts in the configuration (the same ``[channels.routing]`` tables the
router scores with), latencies from what the customers measured. Money stays integer fen (fees
milli-fen) until it is printed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from switch.invariants import Violation
from switch.routing import ChannelPolicy
from switch.store import Database, Row

from .customers import Outcome

__all__ = ["Summary", "percentile", "print_summary", "summarize", "yuan", "yuan_mfen"]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}¥{abs(fen) // 100}.{abs(fen) % 100:02d}"


def yuan_mfen(mfen: int) -> str:
    """Milli-fen as yuan to the last digit (a fee is often a fraction of a fen)."""
    sign = "-" if mfen < 0 else ""
    return f"{sign}¥{abs(mfen) // 100_000}.{abs(mfen) % 100_000:05d}"


@dataclass(frozen=True, slots=True)
class ChannelLine:
    channel: str
    sales: int
    captured_fen: int
    fee_mfen: int


@dataclass(frozen=True, slots=True)
class Summary:
    customers: int
    states: Mapping[str, int]
    sales: int
    volume_ml: int
    captured_fen: int
    discount_fen: int
    refunded_fen: int
    channels: Sequence[ChannelLine]
    failovers: int
    create_latency_s: Mapping[str, float | None]
    sale_latency_s: Mapping[str, float | None]
    errors: Sequence[str] = ()
    violations: Sequence[Violation] = field(default_factory=tuple)

    @property
    def fees_mfen(self) -> int:
        return sum(line.fee_mfen for line in self.channels)

    def to_json(self) -> dict[str, Any]:
        return {
            "customers": self.customers,
            "states": dict(self.states),
            "sales": self.sales,
            "volume_ml": self.volume_ml,
            "captured_fen": self.captured_fen,
            "discount_fen": self.discount_fen,
            "refunded_fen": self.refunded_fen,
            "fees_mfen": self.fees_mfen,
            "channels": {
                line.channel: {
                    "sales": line.sales,
                    "captured_fen": line.captured_fen,
                    "fee_mfen": line.fee_mfen,
                }
                for line in self.channels
            },
            "failovers": self.failovers,
            "latency_s": {"create": dict(self.create_latency_s), "sale": dict(self.sale_latency_s)},
            "errors": list(self.errors),
            "violations": [v.to_json() for v in self.violations],
        }


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{p}": percentile(values, p) for p in (50, 95, 99)}


async def summarize(
    db: Database,
    outcomes: Sequence[Outcome],
    policies: Mapping[str, ChannelPolicy],
    violations: Sequence[Violation],
) -> Summary:
    rows: list[Row] = await db.fetch(
        "SELECT id, state, channel, captured_fen, discount_fen, refunded_fen, volume_ml,"
        " hold_attempts FROM orders"
    )
    completed = [r for r in rows if r["state"] == "completed"]
    per_channel: dict[str, list[Row]] = defaultdict(list)
    for r in completed:
        per_channel[r["channel"] or "?"].append(r)
    lines = []
    for name, sold in sorted(per_channel.items()):
        policy = policies.get(name)
        fee = sum(policy.fee.fee_mfen(r["captured_fen"]) for r in sold) if policy else 0
        lines.append(ChannelLine(name, len(sold), sum(r["captured_fen"] for r in sold), fee))
    create = [o.create_s for o in outcomes if o.create_s is not None]
    sale = [
        o.end_to_end_s
        for o in outcomes
        if o.end_to_end_s is not None and (o.view or {}).get("state") == "completed"
    ]
    return Summary(
        customers=len(outcomes),
        states=dict(Counter(r["state"] for r in rows)),
        sales=len(completed),
        volume_ml=sum(r["volume_ml"] for r in completed),
        captured_fen=sum(r["captured_fen"] for r in completed),
        discount_fen=sum(r["discount_fen"] for r in completed),
        refunded_fen=sum(r["refunded_fen"] for r in rows),
        channels=lines,
        failovers=sum(1 for r in rows if r["hold_attempts"] > 1),
        create_latency_s=_percentiles(create),
        sale_latency_s=_percentiles(sale),
        errors=[f"#{o.plan.index} {o.plan.kind.value}: {o.error}" for o in outcomes if o.error],
        violations=tuple(violations),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def print_summary(console: Console, s: Summary) -> None:
    table = Table(title="fuelswitch demo", show_header=False, title_justify="left")
    table.add_column("figure", style="bold")
    table.add_column("value")
    states = ", ".join(f"{k} {v}" for k, v in sorted(s.states.items()))
    table.add_row("customers", f"{s.customers} ({states})")
    table.add_row("sales", str(s.sales))
    table.add_row("litres", f"{s.volume_ml // 1000}.{s.volume_ml % 1000:03d} L")
    table.add_row("captured", f"{yuan(s.captured_fen)} (discounts {yuan(s.discount_fen)})")
    table.add_row("refunded", yuan(s.refunded_fen))
    for line in s.channels:
        fee = yuan_mfen(line.fee_mfen)
        table.add_row(
            f"  {line.channel}", f"{line.sales} sales, {yuan(line.captured_fen)}, fee {fee}"
        )
    table.add_row("fees paid", yuan_mfen(s.fees_mfen))
    table.add_row("failovers", str(s.failovers))
    for label, figures in (("order create", s.create_latency_s), ("sale", s.sale_latency_s)):
        table.add_row(f"{label} latency", " / ".join(f"{k} {_ms(v)}" for k, v in figures.items()))
    verdict = "[green]none[/]" if not s.violations else f"[red]{len(s.violations)}[/]"
    table.add_row("invariant violations", verdict)
    console.print(table)
    for v in s.violations:
        console.print(f"[red]violation[/] {v.kind.value} {v.subject}: {v.detail}")
    for error in s.errors:
        console.print(f"[yellow]customer[/] {error}")
