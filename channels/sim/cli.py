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
import signal
import sys
from collections.abc import Sequence

import orjson
import structlog
import trio

from channels.model import Provider

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


async def serve(service: ProviderSimService) -> None:
    """Run until SIGTERM or SIGINT; print the ready line once every server listens."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(service.run)
            sys.stdout.buffer.write(orjson.dumps(ready) + b"\n")
            sys.stdout.flush()
            async for signum in signals:
                structlog.get_logger("channels.sim").info("sim.stopping", signal=signum)
                nursery.cancel_scope.cancel()
                break


def _configure_logs(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    logging.basicConfig(stream=sys.stderr, level=level)


def run_providers(
    args: argparse.Namespace, classes: Sequence[type[ProviderSim]] | None = None
) -> int:
    _configure_logs(getattr(args, "verbose", False))
    failures: list[BaseException] = []
    try:
        service = ProviderSimService(config_from_args(args), classes)
        trio.run(serve, service)
    except* (OSError, ValueError, ImportError) as group:  # at start: no port, bad arguments
        failures.extend(_leaves(group))
    for exc in failures:
        print(f"fuelswitch sim providers: {exc}", file=sys.stderr)
    return 1 if failures else 0


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


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions themselves, not trio's nested groups around them."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
