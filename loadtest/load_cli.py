"""``fuelswitch loadtest``: the arguments, and the embedded servers around the trio run.

As for ``fuelswitch demo``, the embedded PostgreSQL and Valkey are started (or adopted)
outside ``trio.run`` and held for the whole run; ``FUELSWITCH_DATABASE_URL`` /
``FUELSWITCH_REDIS_URL`` replace them. With ``--target`` no server is started: the switch,
its database and the simulators are someone else's (see ``--help``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import trio

from .faults import FaultPlan, FaultSpecError, parse_faults

__all__ = ["add_parser", "parse_cpus", "run"]


def parse_cpus(text: str) -> frozenset[int]:
    """``"0"``, ``"0,1"`` or ``"0-3"`` -> the CPU numbers (each must exist here)."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a CPU list: {text!r}") from None
        cpus.update(range(first, last + 1))
    available = os.sched_getaffinity(0)
    if not cpus or not cpus <= available:
        raise argparse.ArgumentTypeError(f"CPUs {sorted(cpus)} not within {sorted(available)}")
    return frozenset(cpus)


def _faults(text: str) -> FaultPlan:
    try:
        return parse_faults(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "loadtest",
        help="drive a switch with open-loop customers; measure; check the books",
        description="Starts (or targets) a switch, the pump simulator and two provider "
        "simulators as separate processes, then customers arriving at an open-loop rate "
        "(prepay and post-pay, every payment method). Measures throughput and latencies "
        "(HDR histograms), the switch's CPU and RSS, optionally under faults and a SIGKILL "
        "of the switch; checks the books at the end. Writes result.json and result.png in "
        "the run directory; exit status 1 on any invariant violation.",
    )
    add = parser.add_argument
    add("--stations", type=_positive_int, default=500, metavar="N")
    add("--pumps-per-station", type=_positive_int, default=10, metavar="M")
    add("--rate", type=_positive_float, default=200.0, metavar="R", help="arrivals per second")
    add("--duration", type=_positive_float, default=60.0, metavar="S", help="seconds of arrivals")
    add("--arrivals", choices=["poisson", "fixed"], default="poisson", help="arrival process")
    add("--postpay-share", type=float, default=0.2, metavar="F", help="post-pay share (0.2)")
    add("--speed", type=_positive_float, default=4.0, metavar="X", help="pump clock speed-up")
    add(
        "--idle-poll-s",
        type=_positive_float,
        metavar="S",
        help="seconds between the switch's polls of an idle pump (default: the switch's own)",
    )
    add("--seed", type=int, default=1, metavar="S")
    add(
        "--faults",
        type=_faults,
        default=FaultPlan(),
        metavar="SPEC",
        help="e.g. channel-timeouts=10%%,callback-loss=10%%,callback-dup=10%%,pump-drop=1%%",
    )
    add("--kill-switch-at", type=_positive_float, metavar="T", help="SIGKILL + restart at T s")
    add("--switch-cpus", type=parse_cpus, metavar="CPUS", help="pin the switch (e.g. 0)")
    add("--load-cpus", type=parse_cpus, metavar="CPUS", help="pin the load side (e.g. 1)")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add("--json", action="store_true", help="print a final JSON line with the figures")
    add(
        "--out",
        type=Path,
        metavar="DIR",
        help="run directory (default $FUELSWITCH_HOME/loadtest/<stamp>)",
    )
    target = parser.add_argument_group(
        "an already running switch",
        "--target URL needs the switch's configuration file (token secret, stations, "
        "database_url), the pump simulator's control port (its station i is the "
        "configuration's station i) and every provider simulator's control URL; "
        "--kill-switch-at cannot be used, --switch-pid enables CPU/RSS sampling.",
    )
    target.add_argument("--target", metavar="URL")
    target.add_argument("--config", type=Path, metavar="FILE")
    target.add_argument("--pump-control", type=int, metavar="PORT")
    target.add_argument("--provider-control", action="append", default=[], metavar="URL")
    target.add_argument("--switch-pid", type=int, metavar="PID")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from switch.config import Settings
    from switch.demo.procs import DemoError
    from switch.store import server_urls

    from .load_run import LoadOptions, run_loadtest

    if args.target and (args.config is None or args.pump_control is None):
        print("fuelswitch loadtest: --target needs --config and --pump-control")
        return 2
    if args.target and args.kill_switch_at is not None:
        print("fuelswitch loadtest: --kill-switch-at needs a switch the run starts itself")
        return 2
    if not 0.0 <= args.postpay_share < 1.0:
        print("fuelswitch loadtest: --postpay-share must be within 0..1")
        return 2
    settings = Settings.from_env()
    options = LoadOptions(
        home=settings.home,
        stations=args.stations,
        pumps=args.pumps_per_station,
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        poisson=args.arrivals == "poisson",
        postpay_share=args.postpay_share,
        speed=args.speed,
        idle_poll_s=args.idle_poll_s,
        faults=args.faults,
        kill_at_s=args.kill_switch_at,
        switch_cpus=args.switch_cpus,
        load_cpus=args.load_cpus,
        json=args.json,
        out=args.out,
        log_level=args.log_level,
        target=args.target,
        target_config=args.config,
        pump_control=args.pump_control,
        provider_controls=tuple(args.provider_control),
        switch_pid=args.switch_pid,
    )
    try:
        if options.target is not None:
            return trio.run(run_loadtest, options, None)
        with server_urls(settings.home, settings.database_url, settings.redis_url) as urls:
            return trio.run(run_loadtest, options, urls)
    except DemoError as exc:
        print(f"fuelswitch loadtest: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
