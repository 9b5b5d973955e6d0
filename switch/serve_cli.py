"""``fuelswitch serve --config switch.toml``: run the switch until SIGTERM or SIGINT.

The first signal drains and stops the switch in order within ``[shutdown] grace_s`` (exit 0);
a second ends the wait for orders under way; a third cancels everything (exit 1), which is
no worse than a crash: recovery resumes every order on the next start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ops.logs import LEVELS, configure_logging
from ops.process import configure_stderr_logs, run_until_signal

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the switch (HTTP API, callbacks, pumps, channels, orders)",
        description="Run the switch from a config file; FUELSWITCH_* environment variables"
        " override it (HOME, DATABASE_URL, REDIS_URL, HTTP_HOST, HTTP_PORT, PUBLIC_URL,"
        " AUTH_SECRET). Prints one JSON line with the HTTP URL once ready. SIGTERM or SIGINT"
        " stops taking orders, waits up to [shutdown] grace_s for those under way, and exits 0;"
        " a second signal stops without waiting.",
    )
    serve.add_argument("--config", required=True, type=Path, metavar="FILE")
    serve.add_argument("--verbose", action="store_true", help="log INFO and above")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from switch.config import ConfigError, load_config
    from switch.server import SwitchProcess
    from switch.store.errors import StoreError

    configure_stderr_logs(args.verbose)
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"fuelswitch serve: {exc}", file=sys.stderr)
        return 2
    level = config.logging.level
    if args.verbose and LEVELS[level] > LEVELS["info"]:
        level = "info"
    configure_logging(config.logging.format, level)
    return run_until_signal(
        "fuelswitch serve",
        lambda: SwitchProcess(config),
        (StoreError, OSError),
        "switch",
    )
