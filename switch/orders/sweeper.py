"""The sweeper: orders with a payment question still open get looked at on a schedule.

An order actor queries its own unanswered attempts while it runs; the sweeper covers the
orders that are not running (passivated while waiting, stopped when terminal with a late
success's refund queued by the callback path) by waking them. Each attempt is woken at 5 s,
30 s, 5 min and then hourly after it was sent (routing.md), until it is resolved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog

from actors import Actor
from switch.store.orders import stuck_attempts

from .directory import OrderDirectory
from .messages import Wake

__all__ = ["Sweeper"]

log = structlog.get_logger("orders")

SCHEDULE_S: Final = (5.0, 30.0, 300.0, 3600.0)


class _Sweep:
    pass


class Sweeper(Actor):
    def __init__(
        self,
        directory: OrderDirectory,
        *,
        interval_s: float = 5.0,
        also: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.also = also  # other periodic chores (staged price sets coming due)
        self.sweeps = 0
        self.woken = 0
        self.last_error: str | None = None
        self._wakes: dict[str, int] = {}  # attempt key -> how many wakes it had

    async def init(self) -> None:
        self.send_after(self.interval_s, _Sweep())

    async def handle_info(self, msg: Any) -> None:
        if not isinstance(msg, _Sweep):
            await super().handle_info(msg)
            return
        try:
            await self.sweep(datetime.now(UTC))
            if self.also is not None:
                await self.also()
        except Exception as exc:  # the database may be away for a while: try next time
            self.last_error = str(exc)
            log.warning("sweeper.failed", error=str(exc))
        self.send_after(self.interval_s, _Sweep())

    async def sweep(self, now: datetime) -> int:
        stuck = await stuck_attempts(
            self.directory.deps.db, now - timedelta(seconds=SCHEDULE_S[0]), limit=500
        )
        live = {a.key for a in stuck}
        self._wakes = {k: v for k, v in self._wakes.items() if k in live}
        woken: set[str] = set()
        for attempt in stuck:
            count = self._wakes.get(attempt.key, 0)
            due = SCHEDULE_S[min(count, len(SCHEDULE_S) - 1)]
            if count >= len(SCHEDULE_S):
                due = SCHEDULE_S[-1] * (count - len(SCHEDULE_S) + 2)
            if now - attempt.requested_at < timedelta(seconds=due):
                continue
            self._wakes[attempt.key] = count + 1
            if attempt.order_id not in woken:
                woken.add(attempt.order_id)
                await self.directory.cast(attempt.order_id, Wake("sweeper"))
        self.sweeps += 1
        self.woken += len(woken)
        return len(woken)

    def snapshot(self) -> dict[str, Any]:
        return {
            "sweeps": self.sweeps,
            "woken": self.woken,
            "tracked": len(self._wakes),
            "last_error": self.last_error,
        }
