"""A pump's recent poll latencies, for operators (``fuelswitch ops pumps``).

Prometheus has the chain-wide histogram; what an operator at one pump wants is "is this pump
slow now", so each PumpActor keeps its last few hundred poll round trips in a ring and reports
the last one and two percentiles over the ring. Cheap: one list store per poll, and a sort of
at most ``size`` floats only when someone asks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PollLatency"]


class PollLatency:
    __slots__ = ("_next", "_ring", "_size", "count", "errors", "last_s")

    def __init__(self, size: int = 256) -> None:
        self._ring: list[float] = []
        self._size = size
        self._next = 0
        self.count = 0
        self.errors = 0
        self.last_s: float | None = None

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.last_s = seconds
        if len(self._ring) < self._size:
            self._ring.append(seconds)
        else:
            self._ring[self._next] = seconds
            self._next = (self._next + 1) % self._size

    def failed(self) -> None:
        self.errors += 1

    def snapshot(self) -> dict[str, Any] | None:
        """``last_ms``, ``p50_ms``, ``p99_ms`` over the ring; None before the first poll."""
        if self.last_s is None:
            return None
        ordered = sorted(self._ring)
        n = len(ordered)

        def at(q: float) -> float:
            return round(ordered[min(n - 1, int(q * n))] * 1000, 3)

        return {
            "last_ms": round(self.last_s * 1000, 3),
            "p50_ms": at(0.50),
            "p99_ms": at(0.99),
            "polls": self.count,
            "errors": self.errors,
        }
