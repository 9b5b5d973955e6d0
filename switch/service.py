"""What the customer and station API asks of the switch, and what it gets back.

The HTTP layer (``switch.api``) knows only this module: requests in, views out, and the
domain errors below, each of which it turns into one problem+json status. The switch
(``switch.orders.OrderService`` with ``switch.stations``) implements :class:`SwitchService`.
Keeping the contract here lets either side change without the other noticing, and lets the
API be tested against a small in-memory implementation of pure logic.

Money is integer fen, volume integer mL, unit prices integer milli-fen per litre.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

__all__ = [
    "BadRequest",
    "Conflict",
    "CreateOrder",
    "Flow",
    "Forbidden",
    "NotFound",
    "OrderView",
    "PayPumpSale",
    "PaymentView",
    "PresetKind",
    "PriceItem",
    "PriceSetView",
    "PumpView",
    "RefundView",
    "ServiceError",
    "StationView",
    "SwitchService",
    "Unavailable",
]


class Flow(enum.StrEnum):
    PREPAY = "prepay"
    POSTPAY = "postpay"


class PresetKind(enum.StrEnum):
    AMOUNT = "amount"  # fen
    VOLUME = "volume"  # mL


# -- errors: each is one problem type and status -------------------------------------------


class ServiceError(Exception):
    """A refusal the customer or staff member can act on. ``code`` is a stable slug used as
    the problem type (``/problems/<code>``); ``detail`` is the precise human message."""

    status = 400
    code = "bad-request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class BadRequest(ServiceError):
    status = 422
    code = "invalid-request"


class NotFound(ServiceError):
    status = 404
    code = "not-found"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class Conflict(ServiceError):
    """The request is well-formed but the world is not in a state that allows it (the pump
    is busy or closed, the order is past cancelling, the refund exceeds what is left)."""

    status = 409
    code = "conflict"


class Unavailable(ServiceError):
    """Nothing can take it now (no eligible payment channel, the switch is draining)."""

    status = 503
    code = "unavailable"


# -- requests --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """A prepay / pre-auth order: hold the preset, then authorize the pump."""

    station_id: str
    pump_no: int
    preset_kind: PresetKind
    preset_value: int  # fen or mL, > 0
    method: str  # "wechatpay" | "alipay" | "unionpay"
    payer_id: str  # WeChat openid, Alipay buyer id; "" for UnionPay
    nozzle_no: int | None = None  # None: any nozzle of the pump
    coupon: str | None = None
    # The order's id, from the request's Idempotency-Key: a request run again after a crash
    # finds the order its first run created (None: a new id).
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class PayPumpSale:
    """Post-pay: pay for the completed sale at the head of the pump's payable buffer.
    ``pump_sale_seq`` (when given) must name that sale, so a customer never pays for
    another driver's fuel because the buffer moved while they looked."""

    station_id: str
    pump_no: int
    method: str
    payer_id: str
    pump_sale_seq: int | None = None
    coupon: str | None = None
    order_id: str | None = None  # as for CreateOrder


@dataclass(frozen=True, slots=True)
class PriceItem:
    grade: str
    unit_price_mfen_per_l: int


# -- views -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentView:
    channel: str
    provider: str
    key: str  # the current hold's idempotency key (out_trade_no / orderId)
    state: str  # the attempt's state
    client_data: Mapping[str, Any] = field(default_factory=dict)  # e.g. WeChat prepay_id


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    customer_id: str
    state: str  # OrderState value
    terminal: bool
    flow: Flow
    station_id: str
    pump_no: int
    nozzle_no: int | None
    preset_kind: PresetKind | None
    preset_value: int | None
    method: str
    held_fen: int
    gross_fen: int
    discount_fen: int
    net_fen: int
    captured_fen: int
    released_fen: int
    refunded_fen: int
    volume_ml: int
    unit_price_mfen_per_l: int | None
    grade: str | None
    sale_id: str | None
    payment: PaymentView | None
    attempts: int  # hold attempts made (> 1 after a failover)
    routing: Mapping[str, Any] | None  # the last routing decision with its reasons
    failure: str | None  # why the order ended without a sale, when it did
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RefundView:
    order_id: str
    refund_id: str
    amount_fen: int
    state: str  # requested | pending | approved | failed
    reason: str


@dataclass(frozen=True, slots=True)
class PayableSaleView:
    pump_sale_seq: int
    nozzle_no: int
    grade: str | None
    volume_ml: int
    amount_fen: int
    unit_price_mfen_per_l: int | None
    locked_by: str | None  # the order paying for it, if any


@dataclass(frozen=True, slots=True)
class PumpView:
    station_id: str
    pump_no: int
    state: str  # idle | calling | authorized | fuelling | completed | closed | offline | error
    open: bool
    free: bool  # a customer could start a prepay order here now
    nozzles: Mapping[int, str]  # nozzle -> grade code
    current_order: str | None
    payable: Sequence[PayableSaleView]


@dataclass(frozen=True, slots=True)
class StationView:
    id: str
    name: str
    address: str
    lat_e6: int
    lon_e6: int
    distance_m: int | None  # from the point asked about
    open_now: bool
    prices: Sequence[PriceItem]
    pumps_total: int
    pumps_free: int


@dataclass(frozen=True, slots=True)
class PriceSetView:
    id: int
    station_id: str
    status: str
    items: Sequence[PriceItem]
    effective_at: datetime | None


# -- the contract ----------------------------------------------------------------------------


class SwitchService(Protocol):
    """Every method raises :class:`ServiceError` subclasses for refusals; anything else is a
    fault (500). ``customer_id`` / ``staff_id`` come from a verified token."""

    async def stations_near(
        self, lat_e6: int, lon_e6: int, radius_m: int, limit: int
    ) -> Sequence[StationView]: ...

    async def station(self, station_id: str) -> StationView: ...

    async def pumps(self, station_id: str) -> Sequence[PumpView]: ...

    async def create_order(self, customer_id: str, request: CreateOrder) -> OrderView: ...

    async def pay_pump_sale(self, customer_id: str, request: PayPumpSale) -> OrderView: ...

    async def order(self, customer_id: str, order_id: str) -> OrderView: ...

    async def cancel_order(self, customer_id: str, order_id: str) -> OrderView: ...

    async def refund_order(
        self, customer_id: str, order_id: str, amount_fen: int, reason: str, request_key: str
    ) -> RefundView: ...

    async def set_prices(
        self,
        staff_id: str,
        station_id: str,
        items: Sequence[PriceItem],
        effective_at: datetime | None,
    ) -> PriceSetView: ...

    async def set_pump_open(
        self, staff_id: str, station_id: str, pump_no: int, open: bool
    ) -> PumpView: ...
