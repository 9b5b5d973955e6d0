"""How every ``fuelswitch bench`` reports: a Rich table for people, then one JSON line."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

Row = tuple[str, str, str | None]  # label, figure key, target key (or None)


def meets(value: float, op: str, limit: float) -> bool:
    return value <= limit if op == "<=" else value >= limit


def verdicts(
    figures: Mapping[str, Any], targets: Mapping[str, tuple[str, float]]
) -> dict[str, bool]:
    return {key: meets(figures[key], op, limit) for key, (op, limit) in targets.items()}


def print_report(
    title: str,
    rows: Sequence[Row],
    figures: Mapping[str, Any],
    targets: Mapping[str, tuple[str, float]],
    *,
    quick: bool,
    notes: Sequence[str] = (),
) -> dict[str, bool]:
    ok = verdicts(figures, targets)
    console = Console(highlight=False)
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    for label, key, target in rows:
        value = figures[key]
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
        if target is None:
            table.add_row(label, text, "", "")
        else:
            op, limit = targets[target]
            table.add_row(label, text, f"{op} {limit:g}", "ok" if ok[target] else "MISS")
    console.print(table)
    for note in notes:
        console.print(note)
    if quick:
        console.print("quick mode: small counts; not for the record")
    sys.stdout.write(orjson.dumps({**figures, "targets_met": ok, "quick": quick}).decode() + "\n")
    return ok
