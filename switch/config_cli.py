"""``fuelswitch config check PATH`` and ``fuelswitch config show PATH``.

``check`` loads the file as the switch would (environment overrides included) and prints a
one-line summary, or the precise error and exit status 2: a deployment can test a config
before restarting with it. ``show`` prints the config as loaded, in TOML (``dump_config``):
defaults filled in, paths made absolute, overrides applied.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, dump_config, load_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``config`` to the ``fuelswitch`` sub-commands; dispatch to :func:`run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="check or show a switch.toml"
    )
    actions = parser.add_subparsers(dest="config_action", required=True)
    for name, text in (("check", "load and validate"), ("show", "print as loaded, in TOML")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("path", type=Path, help="the switch.toml")
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path)
        text = dump_config(config) if args.config_action == "show" else None
    except ConfigError as exc:
        print(f"fuelswitch config: {exc}", file=sys.stderr)
        return 2
    if text is not None:
        sys.stdout.write(text)
        return 0
    pumps = sum(s.pumps for s in config.stations)
    print(
        f"{args.path}: ok: {len(config.grades)} grades, {len(config.stations)} stations,"
        f" {pumps} pumps, {len(config.channels)} channels, {len(config.promotions)} promotions;"
        f" http {config.http.base_url}"
    )
    return 0
