"""``fuelswitch demo``: the arguments, and the embedded servers around the trio run.

The embedded PostgreSQL and Valkey are started (or adopted) here, outside ``trio.run``: they
are blocking context managers, and holding them for the whole run keeps them up for the
switch process, which is pointed at them by URL. ``FUELSWITCH_DATABASE_URL`` /
``FUELSWITCH_REDIS_URL`` replace them, as everywhere else.
"""

from __future__ import annotations

import argparse

import trio

from switch.config import Settings
from switch.store import server_urls

from .procs import DemoError
from .runner import DemoOptions, run_demo

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the whole forecourt locally and check the books",
        description="Starts the embedded PostgreSQL and Valkey, the pump and provider "
        "simulators and the switch; drives customers through prepay and post-pay on several "
        "stations and payment channels (one channel fails half way, so failover shows); "
        "prints a summary and exits 0 only when every invariant of the books holds.",
    )
    add = demo.add_argument
    add("--customers", type=_positive, default=36, metavar="N", help="customers (default 36)")
    add("--stations", type=_positive, default=3, metavar="S", help="stations (default 3)")
    add("--seed", type=int, default=1, metavar="S", help="seed of the customers' choices")
    add("--json", action="store_true", help="print a final JSON line with the figures")
    add("--keep", action="store_true", help="keep everything running until Ctrl-C")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    options = DemoOptions(
        home=settings.home,
        customers=args.customers,
        stations=args.stations,
        seed=args.seed,
        json=args.json,
        keep=args.keep,
    )
    try:
        with server_urls(settings.home, settings.database_url, settings.redis_url) as urls:
            return trio.run(run_demo, options, urls)
    except DemoError as exc:
        print(f"fuelswitch demo: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
