"""The ``fuelswitch`` command line. Subcommands are added as the switch grows.

Handlers import what they need when they run, so ``fuelswitch --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from .process import tune_gc


def _bench_actors(args: argparse.Namespace) -> int:
    import trio

    from loadtest.bench_actors import TARGETS, BenchConfig, quiet_logs, run_bench
    from loadtest.report import print_report

    quiet_logs()
    config = BenchConfig.quick() if args.quick else BenchConfig()
    figures = trio.run(run_bench, config)
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
    ok = print_report("fuelswitch bench actors", rows, figures, TARGETS, quick=args.quick)
    return 1 if args.check and not all(ok.values()) else 0


def _bench_journal(args: argparse.Namespace) -> int:
    import trio

    from loadtest.bench_actors import quiet_logs
    from loadtest.bench_journal import TARGETS, JournalBenchConfig, run_journal_bench
    from loadtest.report import print_report

    from .config import Settings
    from .store import database_server

    quiet_logs()
    settings = Settings.from_env()
    config = JournalBenchConfig.quick() if args.quick else JournalBenchConfig()
    with database_server(settings.home, settings.database_url) as database_url:
        figures = trio.run(run_journal_bench, database_url, config)
    rows = [
        ("journal appends per second (1,000 streams)", "journal_events_per_s", None),
        ("raw COPY per second, same events and commits", "copy_events_per_s", None),
        ("append_ratio", "append_ratio", "append_ratio"),
        ("raw COPY per second, one bulk COPY", "copy_bulk_events_per_s", None),
        ("append_ratio_vs_bulk", "append_ratio_vs_bulk", None),
        ("mean events per commit", "mean_batch", None),
        ("steady rate (events/s)", "steady_rate", None),
        ("append latency p50 (ms)", "steady_p50_ms", None),
        ("append latency p99 (ms)", "steady_p99_ms", "steady_p99_ms"),
        ("append latency max (ms)", "steady_max_ms", None),
    ]
    ok = print_report("fuelswitch bench journal", rows, figures, TARGETS, quick=args.quick)
    return 1 if args.check and not all(ok.values()) else 0


def _bench_dart(args: argparse.Namespace) -> int:
    import trio

    from loadtest.bench_actors import quiet_logs
    from loadtest.bench_dart import TARGETS, DartBenchConfig, run_dart_bench
    from loadtest.report import print_report

    quiet_logs()
    config = DartBenchConfig.quick() if args.quick else DartBenchConfig()
    figures = trio.run(run_dart_bench, config)
    rows = [
        ("polls per second, all pumps idle", "polls_per_s_idle", None),
        ("line limit then (960 B/s / bytes per poll)", "limit_polls_per_s_idle", None),
        ("bytes on the wire per poll, idle", "bytes_per_poll_idle", None),
        ("line_ratio, idle", "line_ratio_idle", None),
        ("polls per second, one pump fuelling", "polls_per_s_fuelling", None),
        ("line limit then", "limit_polls_per_s_fuelling", None),
        ("bytes on the wire per poll, fuelling", "bytes_per_poll_fuelling", None),
        ("line_ratio, fuelling", "line_ratio_fuelling", None),
        ("line_ratio (the lower)", "line_ratio", "line_ratio"),
        ("polls that met silence", "silent_polls", None),
    ]
    notes = [f"{config.pumps} pumps on one line at {config.baudrate} baud (8N1), simulated"]
    ok = print_report(
        "fuelswitch bench dart", rows, figures, TARGETS, quick=args.quick, notes=notes
    )
    return 1 if args.check and not all(ok.values()) else 0


def _bench_pumps(args: argparse.Namespace) -> int:
    import trio

    from loadtest.bench_actors import quiet_logs
    from loadtest.bench_pumps import TARGETS, PumpBenchConfig, print_steps, run_pump_bench
    from loadtest.report import print_report

    from .config import Settings
    from .store import database_server

    quiet_logs()
    settings = Settings.from_env()
    config = PumpBenchConfig.quick() if args.quick else PumpBenchConfig()
    with database_server(settings.home, settings.database_url) as database_url:
        figures = trio.run(run_pump_bench, database_url, config)
    print_steps(figures["steps"])
    rows = [
        ("PumpActor Modbus transactions per second", "actor_tx_per_s", None),
        ("raw framer loop, one connection, same depth", "raw_tx_per_s", None),
        ("modbus_ratio", "modbus_ratio", "modbus_ratio"),
        ("switch CPU per transaction, actors (us)", "actor_cpu_us_per_tx", None),
        ("switch CPU per transaction, raw loop (us)", "raw_cpu_us_per_tx", None),
        ("cpu_ratio (raw / actors, per transaction)", "cpu_ratio", None),
        ("simulator CPU while actors ran (of a core)", "actor_sim_cpu", None),
        ("simulator CPU while raw loop ran (of a core)", "raw_sim_cpu", None),
        ("max_pumps_1hz_half_core", "max_pumps_1hz_half_core", "max_pumps_1hz_half_core"),
        ("switch CPU there (of a core)", "cpu_at_max", None),
        ("simulator CPU there (of a core)", "sim_cpu_at_max", None),
        ("status polls per second there", "polls_per_s_at_max", None),
        ("switch CPU per poll (us)", "cpu_us_per_poll", None),
        ("pumps at half a core, extrapolated", "est_pumps_at_half_core", None),
        ("poll latency p50 (ms)", "poll_p50_ms", None),
        ("poll latency p99 (ms)", "poll_p99_ms", None),
    ]
    notes = [
        f"stepping stopped by: {figures['stopped_by']}",
        f"{figures['cores']} cores shared by this process, the simulator and PostgreSQL; "
        f"load average {figures['loadavg_1m_before']:.2f} before the run, "
        f"{figures['loadavg_1m_after']:.2f} after",
    ]
    ok = print_report(
        "fuelswitch bench pumps", rows, figures, TARGETS, quick=args.quick, notes=notes
    )
    return 1 if args.check and not all(ok.values()) else 0


def _db(args: argparse.Namespace) -> int:
    from .db_cli import run_db_command

    return run_db_command(args.db_command)


def _sim_pumps(args: argparse.Namespace) -> int:
    from devices.sim.cli import run_pumps

    return run_pumps(args)


def _sim_providers(args: argparse.Namespace) -> int:
    from channels.sim.cli import run_providers

    return run_providers(args)


def _sim_providers_keys(args: argparse.Namespace) -> int:
    from channels.sim.cli import run_keys

    return run_keys(args)


def _add_sim_providers(sims: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    providers = sims.add_parser(
        "providers",
        help="WeChat Pay, Alipay and UnionPay as local HTTP servers",
        description="Simulated payment providers speaking the real wire formats, signatures "
        "and callbacks: one HTTP server per provider and a control API (HTTP + JSON). Keys are "
        "generated under $FUELSWITCH_HOME/keys on the first start and reused. Prints one JSON "
        "line with the URLs once listening; runs until SIGTERM or SIGINT.",
    )
    add = providers.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    for name in ("wechatpay", "alipay", "unionpay", "control"):
        add(f"--{name}-port", type=int, default=0, metavar="P", help="0: a free port (default)")
    add(
        "--clock-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="simulated seconds per real second (3600: a day of callback retries in 24 s)",
    )
    add("--seed", type=int, default=0, metavar="S", help="seed of every random choice")
    add("--merchants", type=int, default=1, metavar="N", help="merchants per provider")
    add("--verbose", action="store_true", help="log requests, faults and callbacks")
    providers.set_defaults(func=_sim_providers)
    actions = providers.add_subparsers(dest="providers_command", metavar="ACTION")
    keys = actions.add_parser(
        "keys",
        help="print the public material a switch needs (generating keys if missing)",
        description="Print, as JSON, each provider's merchants with their keys directory and "
        "ids: what a switch configuration needs. Generates the keys first if there are none.",
    )
    keys.add_argument(
        "--merchants", type=int, default=argparse.SUPPRESS, metavar="N", help="per provider"
    )
    keys.set_defaults(func=_sim_providers_keys)


def _add_sim(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser("sim", help="run a simulator of the field devices or providers")
    sims = sim.add_subparsers(dest="sim", required=True, metavar="SIMULATOR")
    pumps = sims.add_parser(
        "pumps",
        help="GFD-1 dispensers behind Modbus TCP gateways (and an RTU line)",
        description="Simulated GFD-1 fuelling points: one Modbus TCP gateway per station "
        "(unit id = pump number), optionally one more station on an RTU line, a control API "
        "(JSON lines) and a state file. Prints one JSON line with the ports once listening; "
        "runs until SIGTERM or SIGINT.",
    )
    add = pumps.add_argument
    add("--stations", type=int, default=1, metavar="N", help="TCP stations (default 1)")
    add("--pumps-per-station", type=int, default=4, metavar="M", help="unit ids 1..M")
    add("--port-base", type=int, default=0, metavar="P", help="station i on P+i (0: free ports)")
    add("--nozzles", type=int, default=2, metavar="K", help="nozzles per pump (default 2)")
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--rtu", metavar="PTY", help="serve one more station on this tty (RTU, unit = pump)")
    add("--rtu-baudrate", type=int, default=115200, metavar="BAUD")
    add("--rtu-parity", choices=["N", "E", "O"], default="N")
    add(
        "--dart",
        metavar="PTY",
        help='serve one more station on this tty as a DART line ("pty": make a pty pair'
        " and report the path the switch opens)",
    )
    add("--dart-baudrate", type=int, default=9600, metavar="BAUD")
    add("--dart-parity", choices=["N", "E", "O"], default="O")
    add("--dart-pumps", type=int, default=4, metavar="N", help="DART pumps 1..N (default 4)")
    add("--state", metavar="FILE", help="persist every point here (restored with a power-up)")
    add("--control-port", type=int, metavar="C", help="JSON-lines control API (0: free port)")
    add(
        "--random-customers",
        type=float,
        default=0.0,
        metavar="R",
        help="random customers per pump per minute (default 0: none)",
    )
    add("--patience", type=float, default=120.0, metavar="S", help="unauthorized customers leave")
    add("--mode", choices=["host", "stand-alone"], default="host", help="MODE of new pumps")
    add("--seed", type=int, default=0, metavar="S", help="seed of every random choice")
    add("--tick", type=float, default=0.05, metavar="S", help="clock step, seconds")
    add("--speed", type=float, default=1.0, metavar="X", help="model seconds per real second")
    add("--verbose", action="store_true", help="log every connection and garbage run")
    pumps.set_defaults(func=_sim_pumps)
    _add_sim_providers(sims)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fuelswitch",
        description="Central transaction switch of a fuel-retail chain.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    bench = commands.add_parser("bench", help="run a benchmark and print its figures")
    benches = bench.add_subparsers(dest="bench", required=True, metavar="BENCH")
    for name, func, text in (
        ("actors", _bench_actors, "the actor runtime against raw trio channels"),
        ("journal", _bench_journal, "the journal writer against raw asyncpg COPY"),
        ("pumps", _bench_pumps, "PumpActors polling simulated pumps over Modbus TCP"),
        ("dart", _bench_dart, "the DART line master against the line's own limit"),
    ):
        sub = benches.add_parser(name, help=f"{text} (table, then a final JSON line)")
        sub.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
        sub.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
        sub.set_defaults(func=func)

    db = commands.add_parser(
        "db",
        help="the database schema (FUELSWITCH_DATABASE_URL, or the embedded server)",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser("migrate", help="apply pending migrations")
    db_commands.add_parser("status", help="list migrations: applied, pending, changed")
    db.set_defaults(func=_db)
    _add_sim(commands)
    from loadtest.load_cli import add_parser as add_loadtest
    from ops.cli import add_parser as add_ops
    from switch.api.token_cli import add_parser as add_token
    from switch.config_cli import add_parser as add_config
    from switch.demo import add_parser as add_demo
    from switch.serve_cli import add_parser as add_serve

    add_serve(commands)
    add_demo(commands)
    add_token(commands)
    add_config(commands)
    add_ops(commands)
    add_loadtest(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_gc()
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
