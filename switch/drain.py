"""Draining the switch, and the wait a stop makes before it tears anything down.

Theory of operation
-------------------
Draining is one flag on the order service: creating an order and paying a pump's sale answer
503, and everything else carries on (provider callbacks, cancels, refunds, the pumps, the
orders already running), so an operator can drain a switch and resume it without a restart.

A stop (SIGTERM or SIGINT to ``fuelswitch serve``) drains first, then waits, up to the grace
less a reserve for the stop itself, for the orders that are *moving* (a step under way or due)
or *fuelling* (their sale ends by itself, and is then captured); orders *waiting* for a person
(to pay, to lift the nozzle) are parked at once. Parking needs nothing done: every step of an
order is journaled before it is announced, and recovery on the next start re-drives whatever
is not terminal, asking the provider and the pump what happened meanwhile. A second signal
ends the wait at once. The orderly stop that follows is in :mod:`switch.server`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import structlog
import trio

from .orders import Activity, OrderDirectory

__all__ = ["DrainReport", "StopPlan", "wait_for_orders"]

log = structlog.get_logger("switch")

STOP_RESERVE_S: Final = 5.0  # of the grace, kept for the stop after the wait (at most)
POLL_S: Final = 0.1
PROGRESS_EVERY_S: Final = 2.0
_BUSY: Final = frozenset({Activity.MOVING, Activity.FUELLING})


@dataclass(frozen=True, slots=True)
class StopPlan:
    """How a grace period is split: waiting for orders, then stopping the parts."""

    grace_s: float

    @property
    def reserve_s(self) -> float:
        """The stop's share: an order finishing its current message, the channels and pumps
        closing, the journal's last commit."""
        return min(STOP_RESERVE_S, self.grace_s / 4)

    @property
    def wait_s(self) -> float:
        return max(0.0, self.grace_s - self.reserve_s)


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What the wait before a stop achieved (logged when the process exits)."""

    finished: int  # in flight when the stop began, done by the end of the wait
    waiting: int  # parked: waiting for a person (or passivated)
    fuelling: int  # parked: the pump still dispensing when the grace ran out
    moving: int  # parked mid-way when the grace ran out (each ends its current message)
    waited_s: float
    hurried: bool  # a second signal ended the wait

    @property
    def parked(self) -> int:
        return self.waiting + self.fuelling + self.moving

    def to_log(self) -> dict[str, Any]:
        return {
            "finished": self.finished,
            "parked": self.parked,
            "parked_waiting": self.waiting,
            "parked_fuelling": self.fuelling,
            "parked_moving": self.moving,
            "waited_s": round(self.waited_s, 3),
            "hurried": self.hurried,
        }


async def wait_for_orders(
    directory: OrderDirectory, *, deadline: float, hurry: trio.Event
) -> DrainReport:
    """Wait until no order is moving or fuelling, ``deadline`` (trio time) passes, or
    ``hurry`` is set; log progress. The service must already be draining."""
    started = trio.current_time()
    at_start = {k for k, a in directory.activities().items() if a is not Activity.DONE}
    log.info("switch.draining", in_flight=len(at_start), **directory.census())
    next_progress = started + PROGRESS_EVERY_S
    while True:
        now = trio.current_time()
        activities = directory.activities()
        busy = sum(1 for a in activities.values() if a in _BUSY)
        if busy == 0 or now >= deadline or hurry.is_set():
            break
        if now >= next_progress:
            next_progress = now + PROGRESS_EVERY_S
            log.info(
                "switch.draining",
                left_s=round(deadline - now, 1),
                in_flight=sum(1 for a in activities.values() if a is not Activity.DONE),
                **directory.census(),
            )
        with trio.move_on_at(min(deadline, now + POLL_S)):
            await hurry.wait()
    parked = {k: a for k, a in activities.items() if a is not Activity.DONE}
    report = DrainReport(
        finished=len(at_start - parked.keys()),
        waiting=sum(1 for a in parked.values() if a is Activity.WAITING),
        fuelling=sum(1 for a in parked.values() if a is Activity.FUELLING),
        moving=sum(1 for a in parked.values() if a is Activity.MOVING),
        waited_s=trio.current_time() - started,
        hurried=hurry.is_set(),
    )
    if report.moving or report.fuelling:
        log.warning(
            "switch.drain_cut", reason="hurried" if report.hurried else "grace", **report.to_log()
        )
    else:
        log.info("switch.drained", **report.to_log())
    return report
