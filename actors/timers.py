"""One task serves every actor timer (``send_after``).

A pump polling at 4 Hz sets a timer every 250 ms; thousands of pumps would be
thousands of sleeping tasks. Instead timers sit in a heap and a single task sleeps
until the earliest one. A timer belongs to one incarnation of one actor: if the
actor restarted in between, the message is not delivered (as in OTP, timers die
with the process that set them).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio


class Timer:
    """A pending ``send_after``; ``cancel()`` is idempotent and O(1)."""

    __slots__ = ("cancelled", "deadline", "deliver", "fired", "msg")

    def __init__(self, deadline: float, deliver: Callable[[Any], None], msg: Any) -> None:
        self.deadline = deadline
        self.deliver = deliver
        self.msg = msg
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def active(self) -> bool:
        return not (self.cancelled or self.fired)


class TimerService:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._fired = 0

    def call_at(self, deadline: float, deliver: Callable[[Any], None], msg: Any) -> Timer:
        timer = Timer(deadline, deliver, msg)
        heap = self._heap
        earliest = heap[0][0] if heap else math.inf
        heapq.heappush(heap, (deadline, next(self._seq), timer))
        if deadline < earliest:
            self._wakeup.set()
        return timer

    def statistics(self) -> dict[str, int]:
        return {"pending": len(self._heap), "fired": self._fired}

    async def run(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, timer = heapq.heappop(heap)
                if timer.cancelled:
                    continue
                timer.fired = True
                self._fired += 1
                timer.deliver(timer.msg)
            deadline = heap[0][0] if heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
