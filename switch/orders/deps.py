"""Everything an OrderActor needs from the rest of the switch, passed in one value.

Orders never hold channel or pump objects, only their addresses: a restarted channel or pump
actor keeps its address, so an order never talks to a stale incarnation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from channels.config import ChannelConfig
from switch.pricing import PromotionBook
from switch.routing import Router
from switch.store.bridge import Database
from switch.store.bus import OrderUpdates
from switch.store.journal import Journal

__all__ = ["OrderDeps", "OrderTimings", "pump_address"]


def pump_address(station_id: str, pump_no: int) -> str:
    return f"stations/{station_id}/p{pump_no:02d}"


@dataclass(frozen=True, slots=True)
class OrderTimings:
    customer_pay_timeout_s: float = 120.0
    unknown_budget_s: float = 30.0  # query -> close -> reroute at the pump
    sale_deadline_s: float = 1800.0
    # Query schedule of an unanswered attempt (seconds after it was sent), then every last.
    query_after_s: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0)
    pump_check_s: float = 5.0  # look at the pump's record while a sale is out
    max_hold_attempts: int = 3
    provider_call_timeout_s: float = 20.0  # the channel's own HTTP timeouts are shorter
    pump_call_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class OrderDeps:
    db: Database
    journal: Journal
    updates: OrderUpdates | None
    router: Router
    channels: Mapping[str, ChannelConfig]
    promotions: PromotionBook
    timings: OrderTimings = field(default_factory=OrderTimings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    orders_supervisor: str = "orders"
