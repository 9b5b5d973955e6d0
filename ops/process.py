"""Running a helper process (the simulators) until SIGTERM or SIGINT.

The simulators are processes of their own that a test or load test starts and reads: once
every server listens, one JSON line goes to stdout, logs go to stderr, and a signal stops the
process with status 0. A failure at start (a busy port, a bad argument) is printed as one line
naming the command, not as trio's nested exception groups, and the status is 1.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
import structlog
import trio

__all__ = ["Service", "configure_stderr_logs", "leaves", "run_until_signal", "serve_until_signal"]


class Service(Protocol):
    """Anything started with ``nursery.start(service.run)`` that reports a JSON-able ready dict."""

    def run(self, *, task_status: trio.TaskStatus[dict[str, Any]]) -> Awaitable[None]: ...


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions themselves: trio's nurseries nest groups, whose own message
    ("Exceptions from Trio nursery") tells nobody anything."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def configure_stderr_logs(verbose: bool) -> None:
    """Readable structlog lines on stderr, INFO with ``--verbose`` and WARNING without."""
    level = logging.INFO if verbose else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )


async def serve_until_signal(service: Service, logger: str) -> None:
    """Run ``service`` until SIGTERM or SIGINT; print its ready line once it listens."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            ready = await nursery.start(service.run)
            sys.stdout.buffer.write(orjson.dumps(ready) + b"\n")
            sys.stdout.flush()
            async for signum in signals:
                structlog.get_logger(logger).info("sim.stopping", signal=signum)
                nursery.cancel_scope.cancel()
                break


def run_until_signal(
    command: str,
    build: Callable[[], Service],
    startup_errors: tuple[type[Exception], ...],
    logger: str,
) -> int:
    """``build`` the service and serve it; the exit status for the command line."""
    failures: list[BaseException] = []
    try:
        trio.run(serve_until_signal, build(), logger)
    except* startup_errors as group:
        failures.extend(leaves(group))
    for exc in failures:
        print(f"{command}: {exc}", file=sys.stderr)
    return 1 if failures else 0
