"""Pure supervision policy: restart types, strategies, exit reasons, intensity, backoff.

No trio here: these functions take times and return decisions, so they are tested
exhaustively (and property-tested) without an event loop. The semantics are OTP's:

* restart type (per child) decides *whether* an exited child comes back:
  ``permanent`` always, ``transient`` only after an abnormal exit, ``temporary`` never;
* strategy (per supervisor) decides *which* children restart with it:
  ``one_for_one`` just the child, ``one_for_all`` every child, ``rest_for_one`` the child
  and those started after it;
* intensity/period (per supervisor, across all its children): a restart that makes more
  than ``intensity`` restarts within ``period`` seconds is refused, and the supervisor
  gives up.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class ExitKind(enum.Enum):
    NORMAL = "normal"  # the actor stopped itself
    SHUTDOWN = "shutdown"  # its supervisor stopped it
    PASSIVATED = "passivated"  # stopped while idle; comes back on its next message
    CRASHED = "crashed"  # a hook raised
    KILLED = "killed"  # cancelled after its shutdown grace ran out


ABNORMAL: Final[frozenset[ExitKind]] = frozenset({ExitKind.CRASHED, ExitKind.KILLED})


@dataclass(frozen=True, slots=True)
class Exit:
    """Why an incarnation ended."""

    kind: ExitKind
    error: BaseException | None = None

    @property
    def abnormal(self) -> bool:
        return self.kind in ABNORMAL

    def describe(self) -> str:
        if self.error is None:
            return self.kind.value
        return f"{self.kind.value}: {type(self.error).__name__}: {self.error}"


NORMAL: Final = Exit(ExitKind.NORMAL)
SHUTDOWN: Final = Exit(ExitKind.SHUTDOWN)
PASSIVATED: Final = Exit(ExitKind.PASSIVATED)
KILLED: Final = Exit(ExitKind.KILLED)


RESTART_ON_EXIT: Final[Mapping[tuple[Restart, bool], bool]] = {
    # (restart type, exit was abnormal) -> restart?
    (Restart.PERMANENT, False): True,
    (Restart.PERMANENT, True): True,
    (Restart.TRANSIENT, False): False,
    (Restart.TRANSIENT, True): True,
    (Restart.TEMPORARY, False): False,
    (Restart.TEMPORARY, True): False,
}


def should_restart(restart: Restart, exit: Exit) -> bool:
    return RESTART_ON_EXIT[restart, exit.abnormal]


def restart_group(strategy: Strategy, order: Sequence[str], failed: str) -> list[str]:
    """The children, in start order, that restart when ``failed`` exits."""
    if strategy is Strategy.ONE_FOR_ONE:
        return [failed]
    if strategy is Strategy.ONE_FOR_ALL:
        return list(order)
    return list(order[order.index(failed) :])


class RestartWindow:
    """Restart intensity over a sliding period, counted across all of a supervisor's children.

    Copies OTP's ``add_restart``: drop restarts older than ``now - period``, add this one,
    and allow it if at most ``intensity`` remain. ``intensity=0`` allows no restart at all.
    """

    __slots__ = ("_times", "intensity", "period")

    def __init__(self, intensity: int, period: float) -> None:
        if intensity < 0 or period <= 0:
            raise ValueError("intensity must be >= 0 and period > 0")
        self.intensity = intensity
        self.period = period
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at ``now``; ``False`` means the intensity is exceeded."""
        times = self._times
        threshold = now - self.period
        while times and times[0] < threshold:
            times.popleft()
        times.append(now)
        return len(times) <= self.intensity

    def recent(self, now: float) -> int:
        threshold = now - self.period
        return sum(1 for t in self._times if t >= threshold)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential restart delay for children that touch external systems.

    The n-th consecutive restart (n from 0) waits ``min(max_delay, min_delay * factor**n)``
    shortened by up to ``jitter`` of itself, so a fleet restarting together spreads out
    without ever waiting longer than ``max_delay``. The count resets once an incarnation
    has stayed up for ``reset_after`` seconds.
    """

    min_delay: float = 0.1
    max_delay: float = 30.0
    jitter: float = 0.2
    factor: float = 2.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        # Written as positive checks so that NaN fails them too.
        if not (0 <= self.min_delay <= self.max_delay < math.inf):
            raise ValueError("need 0 <= min_delay <= max_delay < inf")
        if not (0 <= self.jitter <= 1 and self.factor >= 1 and self.reset_after >= 0):
            raise ValueError("need 0 <= jitter <= 1, factor >= 1 and reset_after >= 0")

    def base(self, attempt: int) -> float:
        if attempt <= 0 or self.min_delay == 0 or self.factor == 1:
            return self.min_delay
        # Compare in log space: factor**attempt, and even max/min, can overflow a float.
        log_growth = attempt * math.log(self.factor)
        if log_growth >= math.log(self.max_delay) - math.log(self.min_delay):
            return self.max_delay
        try:
            grown = self.min_delay * self.factor**attempt
        except OverflowError:  # factor**attempt alone is too big; the product is not
            grown = math.exp(math.log(self.min_delay) + log_growth)
        return min(self.max_delay, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        base = self.base(attempt)
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)
