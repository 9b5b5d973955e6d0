"""The ``fuelswitch`` command line. Subcommands are added as the switch grows."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import orjson

from .process import tune_gc


def _bench_actors(args: argparse.Namespace) -> int:
    import trio
    from rich.console import Console
    from rich.table import Table

    from loadtest.bench_actors import TARGETS, BenchConfig, quiet_logs, run_bench, verdicts

    quiet_logs()
    config = BenchConfig.quick() if args.quick else BenchConfig()
    figures = trio.run(run_bench, config)
    ok = verdicts(figures)
    console = Console(stderr=False, highlight=False)
    table = Table(title="fuelswitch bench actors")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    rows = [
        ("call round trip (us)", "call_us", None),
        ("raw channel request/reply (us)", "raw_call_us", None),
        ("call_ratio", "call_ratio", "call_ratio"),
        ("casts per second", "cast_per_s", None),
        ("raw channel sends per second", "raw_cast_per_s", None),
        ("cast_ratio", "cast_ratio", "cast_ratio"),
        ("idle RSS for 10k actors (MB)", "idle_rss_mb_10k", "idle_rss_mb_10k"),
        ("bytes per idle actor", "idle_bytes_per_actor", None),
        ("start 10k actors (s)", "start_s_10k", "start_s_10k"),
        ("same, CPython's default GC thresholds (s)", "start_s_10k_default_gc", None),
        ("crash -> restarted -> reply, median (us)", "restart_us", None),
        ("same, p99 (us)", "restart_p99_us", None),
    ]
    for label, key, target in rows:
        value = figures[key]
        text = f"{value:,.0f}" if value >= 1000 else f"{value:.3f}"
        if target is None:
            table.add_row(label, text, "", "")
        else:
            op, limit = TARGETS[target]
            table.add_row(label, text, f"{op} {limit:g}", "ok" if ok[target] else "MISS")
    console.print(table)
    if args.quick:
        console.print("quick mode: small counts, figures scaled to 10k; not for the record")
    result = {**figures, "targets_met": ok, "quick": bool(args.quick)}
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0 if all(ok.values()) or not args.check else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fuelswitch",
        description="Central transaction switch of a fuel-retail chain.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    actors = benches.add_parser(
        "actors",
        help="the actor runtime against raw trio channels (table, then a final JSON line)",
    )
    actors.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    actors.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    actors.set_defaults(func=_bench_actors)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_gc()
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
