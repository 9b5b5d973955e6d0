"""Provider simulators: WeChat Pay, Alipay and UnionPay as local HTTP servers, and the framework
they share (simulated clock, ledger, callback engine, faults, control API, the process)."""

from channels.sim.base import (
    CUSTOMER_ACTIONS,
    CustomerAction,
    CustomerError,
    ProviderSim,
    SimContext,
    SimMerchant,
    default_merchants,
    open_sim_context,
)
from channels.sim.callbacks import (
    ALIPAY_RETRY_S,
    RETRY_SCHEDULES,
    UNIONPAY_RETRY_S,
    WECHATPAY_RETRY_S,
    CallbackEngine,
    Delivery,
    DeliveryRecord,
)
from channels.sim.clock import SimClock
from channels.sim.faults import FaultMiddleware, Faults, FaultsError, ProviderFaults
from channels.sim.ledger import Ledger, SimRefund, Trade, TradeKind

__all__ = [
    "ALIPAY_RETRY_S",
    "CUSTOMER_ACTIONS",
    "RETRY_SCHEDULES",
    "UNIONPAY_RETRY_S",
    "WECHATPAY_RETRY_S",
    "CallbackEngine",
    "CustomerAction",
    "CustomerError",
    "Delivery",
    "DeliveryRecord",
    "FaultMiddleware",
    "Faults",
    "FaultsError",
    "Ledger",
    "ProviderFaults",
    "ProviderSim",
    "SimClock",
    "SimContext",
    "SimMerchant",
    "SimRefund",
    "Trade",
    "TradeKind",
    "default_merchants",
    "open_sim_context",
]
