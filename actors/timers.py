"""One task serves every timer: actors' ``send_after`` and every ``call``'s timeout.

A pump polling at 4 Hz sets a timer every 250 ms; thousands of pumps would be
thousands of sleeping tasks, and a cancel scope per call costs more than the call
itself when thousands are in flight. Instead timers sit in a heap and a single task
sleeps until the earliest one. Cancelled timers are dropped lazily, and the heap is
rebuilt when they outnumber the live ones, so a cancel is O(1) and memory stays
bounded by the timers actually pending.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio


class Timer:
    """A pending delivery; ``cancel()`` is idempotent and O(1)."""

    __slots__ = ("_service", "cancelled", "deadline", "deliver", "fired", "msg")

    def __init__(
        self,
        service: TimerService,
        deadline: float,
        deliver: Callable[[Any], None],
        msg: Any,
    ) -> None:
        self._service = service
        self.deadline = deadline
        self.deliver = deliver
        self.msg = msg
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        if not (self.cancelled or self.fired):
            self.cancelled = True
            self._service._cancelled_one()

    @property
    def active(self) -> bool:
        return not (self.cancelled or self.fired)


class TimerService:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._wakeup = trio.Event()
        self._fired = 0
        self._cancelled = 0  # cancelled timers still in the heap

    def call_at(self, deadline: float, deliver: Callable[[Any], None], msg: Any) -> Timer:
        timer = Timer(self, deadline, deliver, msg)
        heap = self._heap
        earliest = heap[0][0] if heap else math.inf
        heapq.heappush(heap, (deadline, next(self._seq), timer))
        if deadline < earliest:
            self._wakeup.set()
        return timer

    def _cancelled_one(self) -> None:
        self._cancelled += 1
        heap = self._heap
        if self._cancelled > 1024 and self._cancelled * 2 > len(heap):
            # In place: run() holds a reference to this list.
            heap[:] = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(heap)
            self._cancelled = 0

    def statistics(self) -> dict[str, int]:
        return {
            "pending": len(self._heap) - self._cancelled,
            "cancelled_in_heap": self._cancelled,
            "fired": self._fired,
        }

    async def run(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, timer = heapq.heappop(heap)
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
                timer.fired = True
                self._fired += 1
                timer.deliver(timer.msg)
            deadline = heap[0][0] if heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(deadline):
                await self._wakeup.wait()
