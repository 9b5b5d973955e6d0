"""``fuelswitch sim providers``: the provider simulators as a process of their own.

``switch/cli.py`` defines the arguments and imports this module only when the command runs.
Once every server listens, one JSON line goes to stdout (the URLs of the three providers and
of the control API, the keys root, the merchants) for the test or load test that started the
process to read; logs go to stderr, so stdout carries nothing else. SIGTERM or SIGINT stops the
process; the exit status is then 0. ``fuelswitch sim providers keys`` prints the public material
(generating the keys first if there are none) and exits.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import orjson

from channels.model import Provider
from ops.process import configure_stderr_logs, run_until_signal

from .base import ProviderSim, default_merchants
from .service import (
    ProviderServiceConfig,
    ProviderSimService,
    build_simulators,
    ensure_all_keys,
)

__all__ = ["config_from_args", "run_keys", "run_providers"]


def config_from_args(args: argparse.Namespace) -> ProviderServiceConfig:
    """The service configuration; ValueError for arguments that make no sense."""
    from switch.config import Settings

    ports = {
        Provider.WECHATPAY: getattr(args, "wechatpay_port", 0),
        Provider.ALIPAY: getattr(args, "alipay_port", 0),
        Provider.UNIONPAY: getattr(args, "unionpay_port", 0),
    }
    return ProviderServiceConfig(
        home=Settings.from_env().home,
        host=getattr(args, "host", "127.0.0.1"),
        ports=ports,
        control_port=getattr(args, "control_port", 0),
        clock_scale=getattr(args, "clock_scale", 1.0),
        seed=getattr(args, "seed", 0),
        merchants=getattr(args, "merchants", 1),
    )


def _configure_logs(verbose: bool) -> None:
    configure_stderr_logs(verbose)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if verbose else logging.WARNING)


def run_providers(
    args: argparse.Namespace, classes: Sequence[type[ProviderSim]] | None = None
) -> int:
    _configure_logs(getattr(args, "verbose", False))
    return run_until_signal(
        "fuelswitch sim providers",
        lambda: ProviderSimService(config_from_args(args), classes),
        (OSError, ValueError, ImportError),  # at start: no port, bad arguments
        "channels.sim",
    )


def run_keys(args: argparse.Namespace, classes: Sequence[type[ProviderSim]] | None = None) -> int:
    """Print the public material as one JSON document (keys generated first if missing)."""
    _configure_logs(getattr(args, "verbose", False))
    try:
        config = config_from_args(args)
        if classes is None:
            from .registry import default_providers

            classes = default_providers()
        ensure_all_keys(config.keys_root, classes, default_merchants(config.merchants))
        ctx, sims = build_simulators(config, classes)
        document = {
            "keys": str(ctx.keys_dir),
            **{p.value: s.public_material() for p, s in sims.items()},
        }
    except (OSError, ValueError, ImportError) as exc:
        print(f"fuelswitch sim providers keys: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
    return 0
