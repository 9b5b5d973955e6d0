"""The API's request and response bodies as pydantic models: its OpenAPI document.

Requests forbid unknown fields (a misspelt ``coupon`` must not be silently ignored) and take
money and volume as strict integers: ``12.5`` or ``"1250"`` for fen is a 422 naming the field,
never a rounding. Responses are written by :mod:`switch.api.views` with orjson; these models
describe them (and the tests check every answer against its model).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, Strict

from switch.service import CreateOrder, Flow, PayPumpSale, PresetKind, PriceItem

__all__ = [
    "CreateOrderBody",
    "NozzleOut",
    "OrderOut",
    "PayPumpSaleBody",
    "PayableSaleOut",
    "PaymentOut",
    "PriceItemBody",
    "PriceItemOut",
    "PriceSetOut",
    "PricesBody",
    "PumpList",
    "PumpOut",
    "RefundBody",
    "RefundOut",
    "StationList",
    "StationOut",
]

Fen = Annotated[int, Strict(), Field(gt=0, le=100_000_000, description="fen (1/100 yuan)")]
PresetValue = Annotated[
    int, Strict(), Field(gt=0, le=100_000_000, description="fen for amount, mL for volume")
]
MilliFenPerLitre = Annotated[
    int, Strict(), Field(gt=0, le=100_000_000, description="milli-fen per litre")
]
Number = Annotated[int, Strict(), Field(ge=1, le=99)]
StationId = Annotated[str, Field(min_length=1, max_length=64)]
Method = Literal["wechatpay", "alipay", "unionpay"]
PayerId = Annotated[
    str, Field(max_length=128, description="WeChat openid / Alipay buyer id; '' for UnionPay")
]
Coupon = Annotated[str, Field(min_length=1, max_length=64)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateOrderBody(_Body):
    station_id: StationId
    pump_no: Number
    preset_kind: PresetKind
    preset_value: PresetValue
    method: Method
    payer_id: PayerId = ""
    nozzle_no: Number | None = None
    coupon: Coupon | None = None

    def to_request(self, order_id: str | None = None) -> CreateOrder:
        return CreateOrder(
            order_id=order_id,
            station_id=self.station_id,
            pump_no=self.pump_no,
            preset_kind=self.preset_kind,
            preset_value=self.preset_value,
            method=self.method,
            payer_id=self.payer_id,
            nozzle_no=self.nozzle_no,
            coupon=self.coupon,
        )


class PayPumpSaleBody(_Body):
    method: Method
    payer_id: PayerId = ""
    pump_sale_seq: Annotated[int, Strict(), Field(ge=0)] | None = Field(
        default=None, description="the sale the customer saw; refused if the head moved"
    )
    coupon: Coupon | None = None

    def to_request(self, station_id: str, pump_no: int, order_id: str | None = None) -> PayPumpSale:
        return PayPumpSale(
            order_id=order_id,
            station_id=station_id,
            pump_no=pump_no,
            method=self.method,
            payer_id=self.payer_id,
            pump_sale_seq=self.pump_sale_seq,
            coupon=self.coupon,
        )


class RefundBody(_Body):
    amount_fen: Fen
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class PriceItemBody(_Body):
    grade: Annotated[str, Field(min_length=1, max_length=16)]
    unit_price_mfen_per_l: MilliFenPerLitre

    def to_item(self) -> PriceItem:
        return PriceItem(self.grade, self.unit_price_mfen_per_l)


class PricesBody(_Body):
    items: Annotated[list[PriceItemBody], Field(min_length=1, max_length=32)]
    effective_at: AwareDatetime | None = Field(
        default=None, description="when the prices apply; absent: now"
    )


# -- responses ---------------------------------------------------------------------------


class PaymentOut(BaseModel):
    channel: str
    provider: str
    key: str
    state: str
    client_data: dict[str, Any]


class OrderOut(BaseModel):
    id: str
    customer_id: str
    state: str
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
    payment: PaymentOut | None
    attempts: int
    routing: dict[str, Any] | None
    failure: str | None
    created_at: datetime
    updated_at: datetime


class RefundOut(BaseModel):
    order_id: str
    refund_id: str
    amount_fen: int
    state: str
    reason: str


class NozzleOut(BaseModel):
    nozzle_no: int
    grade: str


class PayableSaleOut(BaseModel):
    pump_sale_seq: int
    nozzle_no: int
    grade: str | None
    volume_ml: int
    amount_fen: int
    unit_price_mfen_per_l: int | None
    locked_by: str | None


class PumpOut(BaseModel):
    station_id: str
    pump_no: int
    state: str
    open: bool
    free: bool
    nozzles: list[NozzleOut]
    current_order: str | None
    payable: list[PayableSaleOut]


class PumpList(BaseModel):
    items: list[PumpOut]


class PriceItemOut(BaseModel):
    grade: str
    unit_price_mfen_per_l: int


class StationOut(BaseModel):
    id: str
    name: str
    address: str
    lat: str = Field(description="decimal degrees, exact (at most 6 decimals)")
    lon: str = Field(description="decimal degrees, exact (at most 6 decimals)")
    distance_m: int | None
    open_now: bool
    prices: list[PriceItemOut]
    pumps_total: int
    pumps_free: int


class StationList(BaseModel):
    items: list[StationOut]


class PriceSetOut(BaseModel):
    id: int
    station_id: str
    status: str
    items: list[PriceItemOut]
    effective_at: datetime | None
