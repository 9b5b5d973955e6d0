"""Running a service process (the switch, the simulators) until SIGTERM or SIGINT.

The simulators are processes of their own that a test or load test starts and reads: once
every server listens, one JSON line goes to stdout, logs go to stderr, and a signal stops the
process with status 0. A failure at start (a busy port, a bad argument) is printed as one line
naming the command, not as trio's nested exception groups, and the status is 1.

A :class:`GracefulService` (the switch) is not cancelled by a signal: the first one asks it to
stop (it drains, then stops in order and its ``run`` returns), the second asks it to hurry,
and only a third cancels it outright, which is reported and exits with status 1.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, runtime_checkable

import orjson
import structlog
import trio

from ops.logs import configure_logging

__all__ = [
    "GracefulService",
    "Service",
    "configure_stderr_logs",
    "leaves",
    "run_until_signal",
    "serve_until_signal",
]

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


class Service(Protocol):
    """Anything started with ``nursery.start(service.run)`` that reports a JSON-able ready dict."""

    def run(self, *, task_status: trio.TaskStatus[dict[str, Any]]) -> Awaitable[None]: ...


@runtime_checkable
class GracefulService(Service, Protocol):
    """A service that stops itself when asked: ``run`` returns once it has."""

    def request_stop(self, *, immediate: bool = False) -> None: ...


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions themselves: trio's nurseries nest groups, whose own message
    ("Exceptions from Trio nursery") tells nobody anything."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def configure_stderr_logs(verbose: bool) -> None:
    """Readable log lines on stderr, INFO with ``--verbose`` and WARNING without."""
    configure_logging("console", "info" if verbose else "warning", sys.stderr)


async def serve_until_signal(service: Service, logger: str) -> bool:
    """Run ``service`` until a signal stops it; print its ready line once it listens.

    Returns True when a graceful service had to be cancelled (a third signal)."""
    log = structlog.get_logger(logger)
    graceful = isinstance(service, GracefulService)
    forced = False
    with trio.open_signal_receiver(*SIGNALS) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal forced
                received = 0
                async for signum in signals:
                    received += 1
                    if isinstance(service, GracefulService) and received <= 2:
                        log.info("process.stop_requested", signal=signum, count=received)
                        service.request_stop(immediate=received > 1)
                        continue
                    forced = graceful
                    if graceful:
                        log.warning("process.cancelled", signal=signum, count=received)
                    else:
                        log.info("sim.stopping", signal=signum)
                    nursery.cancel_scope.cancel()
                    return

            async def run(*, task_status: trio.TaskStatus[dict[str, Any]]) -> None:
                await service.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # it stopped by itself: so does the watch

            nursery.start_soon(watch)
            ready = await nursery.start(run)
            sys.stdout.buffer.write(orjson.dumps(ready) + b"\n")
            sys.stdout.flush()
    return forced


def run_until_signal(
    command: str,
    build: Callable[[], Service],
    startup_errors: tuple[type[Exception], ...],
    logger: str,
) -> int:
    """``build`` the service and serve it; the exit status for the command line."""
    failures: list[BaseException] = []
    forced = False
    try:
        forced = trio.run(serve_until_signal, build(), logger)
    except* startup_errors as group:
        failures.extend(leaves(group))
    for exc in failures:
        print(f"{command}: {exc}", file=sys.stderr)
    if forced:
        print(f"{command}: cancelled by a third signal before it had stopped", file=sys.stderr)
    return 1 if failures or forced else 0
