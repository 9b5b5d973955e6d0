"""Orders: one actor per live order, the service behind the API, recovery and the sweeper."""

from .actor import OrderActor
from .deps import OrderDeps, OrderTimings, pump_address
from .directory import Activity, OrderDirectory, activity, orders_supervisor_spec
from .messages import Cancel, PaymentUpdate, RequestRefund, Tick, Wake
from .model import TERMINAL, Order, OrderData, OrderState, fold
from .recovery import recover_orders
from .service import OrderService, new_order_id
from .sweeper import Sweeper
from .views import view_from_row

__all__ = [
    "TERMINAL",
    "Activity",
    "Cancel",
    "Order",
    "OrderActor",
    "OrderData",
    "OrderDeps",
    "OrderDirectory",
    "OrderService",
    "OrderState",
    "OrderTimings",
    "PaymentUpdate",
    "RequestRefund",
    "Sweeper",
    "Tick",
    "Wake",
    "activity",
    "fold",
    "new_order_id",
    "orders_supervisor_spec",
    "pump_address",
    "recover_orders",
    "view_from_row",
]
