"""Simulated provider time: real time, scaled, plus manual jumps.

Provider behaviour is spread over hours (WeChat retries a callback for 24 h, Alipay for 25 h) and
a bill is about yesterday. A test cannot wait that long, so every provider simulator reads the time
from one :class:`SimClock`: it starts at the real Unix time, runs ``scale`` times faster than real
time, and :meth:`SimClock.advance` jumps it forward. Sleepers are woken by a jump, so a retry due
in six hours fires as soon as a test advances the clock past it.

Elapsed real time comes from ``time.monotonic`` (not trio's clock), so ``now()`` also works outside
trio, in sans-IO code and in synchronous tests.
"""

from __future__ import annotations

import math
import time

import trio

__all__ = ["SimClock"]


class SimClock:
    """Unix seconds of simulated time; ``scale`` simulated seconds pass per real second."""

    def __init__(self, scale: float = 1.0, *, start: float | None = None) -> None:
        _check_scale(scale)
        self._scale = scale
        self._base_real = time.monotonic()
        self._base_sim = time.time() if start is None else start
        self._jumped = trio.Event()

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> float:
        return self._base_sim + (time.monotonic() - self._base_real) * self._scale

    def advance(self, seconds: float) -> float:
        """Jump forward (never back: a provider's clock does not run backwards); returns now()."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("the clock only advances by a finite, non-negative number of seconds")
        self._base_sim += seconds
        self._wake()
        return self.now()

    def set_scale(self, scale: float) -> None:
        """Change the speed from now on; the time itself does not jump."""
        _check_scale(scale)
        now = self.now()
        self._base_real, self._base_sim, self._scale = time.monotonic(), now, scale
        self._wake()

    async def sleep_until(self, t: float) -> None:
        """Sleep until simulated time ``t``; returns early when a jump passes ``t``."""
        while (remaining := t - self.now()) > 0:
            jumped = self._jumped
            with trio.move_on_after(remaining / self._scale):
                await jumped.wait()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of simulated time."""
        await self.sleep_until(self.now() + seconds)

    def _wake(self) -> None:
        self._jumped.set()
        self._jumped = trio.Event()


def _check_scale(scale: float) -> None:
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("the clock scale must be a positive, finite number")
