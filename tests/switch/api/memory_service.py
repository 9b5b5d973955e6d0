"""A small in-memory :class:`switch.service.SwitchService` for the API tests (pure logic).

Two stations, a few pumps, orders that jump to whatever state a test sets; plus the knobs the
API tests need: ``gate`` holds ``create_order`` open (an in-progress request), ``fail_next``
makes the next money call crash (a fault, not a refusal), ``calls`` counts what ran.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

from switch.service import (
    BadRequest,
    Conflict,
    CreateOrder,
    Flow,
    NotFound,
    OrderView,
    PayableSaleView,
    PaymentView,
    PayPumpSale,
    PresetKind,
    PriceItem,
    PriceSetView,
    PumpView,
    RefundView,
    StationView,
    Unavailable,
)

EPOCH = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


@dataclass
class Pump:
    station_id: str
    pump_no: int
    nozzles: dict[int, str]
    open: bool = True
    current_order: str | None = None
    payable: list[PayableSaleView] = field(default_factory=list)

    def view(self) -> PumpView:
        state = "closed" if not self.open else "authorized" if self.current_order else "idle"
        return PumpView(
            station_id=self.station_id,
            pump_no=self.pump_no,
            state=state,
            open=self.open,
            free=self.open and self.current_order is None,
            nozzles=dict(self.nozzles),
            current_order=self.current_order,
            payable=list(self.payable),
        )


@dataclass
class Station:
    id: str
    name: str
    lat_e6: int
    lon_e6: int
    prices: dict[str, int]
    pumps: dict[int, Pump]

    def view(self, distance_m: int | None = None) -> StationView:
        return StationView(
            id=self.id,
            name=self.name,
            address=f"{self.name} road 1",
            lat_e6=self.lat_e6,
            lon_e6=self.lon_e6,
            distance_m=distance_m,
            open_now=True,
            prices=[PriceItem(grade, price) for grade, price in sorted(self.prices.items())],
            pumps_total=len(self.pumps),
            pumps_free=sum(1 for pump in self.pumps.values() if pump.view().free),
        )


def _station(station_id: str, name: str, lat_e6: int, lon_e6: int, pumps: int) -> Station:
    return Station(
        station_id,
        name,
        lat_e6,
        lon_e6,
        {"92": 789_000, "95": 841_000},
        {n: Pump(station_id, n, {1: "92", 2: "95"}) for n in range(1, pumps + 1)},
    )


def _distance_m(lat1_e6: int, lon1_e6: int, lat2_e6: int, lon2_e6: int) -> int:
    """Equirectangular approximation: plenty for ordering stations a few km apart."""
    lat1, lat2 = math.radians(lat1_e6 / 1e6), math.radians(lat2_e6 / 1e6)
    dlon = math.radians((lon2_e6 - lon1_e6) / 1e6)
    x = dlon * math.cos((lat1 + lat2) / 2)
    return round(math.hypot(x, lat2 - lat1) * 6_371_000)


class MemoryService:
    def __init__(self) -> None:
        self.stations = {
            "s001": _station("s001", "People's Square", 31_230_416, 121_473_701, 4),
            "s002": _station("s002", "Hongkou", 31_264_000, 121_505_000, 2),
        }
        self.orders: dict[str, OrderView] = {}
        self.refunds: dict[str, RefundView] = {}  # by request key
        self.calls: Counter[str] = Counter()
        self.gate: trio.Event | None = None
        self.entered = trio.Event()
        self.fail_next = False
        self.unavailable = False
        self._price_sets = 0

    # -- test knobs ---------------------------------------------------------------------

    def _money_call(self, name: str) -> None:
        self.calls[name] += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("the switch fell over")
        if self.unavailable:
            raise Unavailable("no payment channel can take this now")

    def update(self, order_id: str, **changes: object) -> OrderView:
        view = dataclasses.replace(self.orders[order_id], **changes)  # type: ignore[arg-type]
        self.orders[order_id] = view
        return view

    def complete(self, order_id: str, net_fen: int) -> OrderView:
        held = self.orders[order_id].held_fen
        return self.update(
            order_id,
            state="completed",
            terminal=True,
            gross_fen=net_fen,
            net_fen=net_fen,
            captured_fen=net_fen,
            released_fen=held - net_fen,
            volume_ml=net_fen * 1000 // 789,
        )

    # -- SwitchService --------------------------------------------------------------------

    def _pump(self, station_id: str, pump_no: int) -> Pump:
        station = self.stations.get(station_id)
        if station is None:
            raise NotFound(f"there is no station {station_id}")
        pump = station.pumps.get(pump_no)
        if pump is None:
            raise NotFound(f"station {station_id} has no pump {pump_no}")
        return pump

    async def stations_near(
        self, lat_e6: int, lon_e6: int, radius_m: int, limit: int
    ) -> Sequence[StationView]:
        found = [
            (_distance_m(lat_e6, lon_e6, s.lat_e6, s.lon_e6), s) for s in self.stations.values()
        ]
        near = sorted((d, s.id) for d, s in found if d <= radius_m)[:limit]
        return [self.stations[sid].view(d) for d, sid in near]

    async def station(self, station_id: str) -> StationView:
        if station_id not in self.stations:
            raise NotFound(f"there is no station {station_id}")
        return self.stations[station_id].view()

    async def pumps(self, station_id: str) -> Sequence[PumpView]:
        station = self.stations.get(station_id)
        if station is None:
            raise NotFound(f"there is no station {station_id}")
        return [pump.view() for _, pump in sorted(station.pumps.items())]

    def _new_order(
        self, customer_id: str, flow: Flow, pump: Pump, method: str, held_fen: int
    ) -> OrderView:
        order_id = f"O{len(self.orders) + 1:016X}"
        view = OrderView(
            id=order_id,
            customer_id=customer_id,
            state="holding",
            terminal=False,
            flow=flow,
            station_id=pump.station_id,
            pump_no=pump.pump_no,
            nozzle_no=None,
            preset_kind=None,
            preset_value=None,
            method=method,
            held_fen=held_fen,
            gross_fen=0,
            discount_fen=0,
            net_fen=0,
            captured_fen=0,
            released_fen=0,
            refunded_fen=0,
            volume_ml=0,
            unit_price_mfen_per_l=None,
            grade=None,
            sale_id=None,
            payment=PaymentView(
                "wechatpay-main", method, f"{order_id}H1", "pending", {"prepay_id": "wx1"}
            ),
            attempts=1,
            routing={"channel": "wechatpay-main", "reasons": ["cheapest"]},
            failure=None,
            created_at=EPOCH,
            updated_at=EPOCH,
        )
        self.orders[order_id] = view
        pump.current_order = order_id
        return view

    async def create_order(self, customer_id: str, request: CreateOrder) -> OrderView:
        self._money_call("create_order")
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        pump = self._pump(request.station_id, request.pump_no)
        if not pump.open:
            raise Conflict(f"pump {pump.pump_no} is closed", code="pump-closed")
        if pump.current_order is not None:
            raise Conflict(f"pump {pump.pump_no} is busy", code="pump-busy")
        held = request.preset_value
        if request.preset_kind is PresetKind.VOLUME:
            held = -(-request.preset_value * 841_000 // 1_000_000)
        view = self._new_order(customer_id, Flow.PREPAY, pump, request.method, held)
        return self.update(
            view.id,
            nozzle_no=request.nozzle_no,
            preset_kind=request.preset_kind,
            preset_value=request.preset_value,
        )

    async def pay_pump_sale(self, customer_id: str, request: PayPumpSale) -> OrderView:
        self._money_call("pay_pump_sale")
        pump = self._pump(request.station_id, request.pump_no)
        if not pump.payable:
            raise Conflict(f"no sale is waiting at pump {pump.pump_no}", code="no-payable-sale")
        head = pump.payable[0]
        if request.pump_sale_seq is not None and request.pump_sale_seq != head.pump_sale_seq:
            raise Conflict("the sale waiting at the pump is another one", code="sale-moved")
        pump.payable[0] = dataclasses.replace(head, locked_by=f"O{len(self.orders) + 1:016X}")
        view = self._new_order(customer_id, Flow.POSTPAY, pump, request.method, head.amount_fen)
        pump.current_order = None
        return self.update(view.id, gross_fen=head.amount_fen, volume_ml=head.volume_ml)

    async def order(self, customer_id: str, order_id: str) -> OrderView:
        view = self.orders.get(order_id)
        if view is None or view.customer_id != customer_id:
            raise NotFound(f"you have no order {order_id}")
        return view

    async def cancel_order(self, customer_id: str, order_id: str) -> OrderView:
        view = await self.order(customer_id, order_id)
        if view.terminal or view.state not in {"created", "priced", "holding", "held"}:
            raise Conflict(f"order {order_id} is {view.state}: too late to cancel")
        self._pump(view.station_id, view.pump_no).current_order = None
        return self.update(order_id, state="cancelled", terminal=True, released_fen=view.held_fen)

    async def refund_order(
        self, customer_id: str, order_id: str, amount_fen: int, reason: str, request_key: str
    ) -> RefundView:
        self._money_call("refund_order")
        view = await self.order(customer_id, order_id)
        if request_key in self.refunds:
            return self.refunds[request_key]
        if view.state != "completed":
            raise Conflict(f"order {order_id} is {view.state}: nothing to refund")
        left = view.captured_fen - view.refunded_fen
        if amount_fen > left:
            raise Conflict(f"only {left} fen are left to refund", code="refund-exceeds-paid")
        refund = RefundView(
            order_id, f"{order_id}F{len(self.refunds) + 1}", amount_fen, "requested", reason
        )
        self.refunds[request_key] = refund
        self.update(order_id, refunded_fen=view.refunded_fen + amount_fen)
        return refund

    async def set_prices(
        self,
        staff_id: str,
        station_id: str,
        items: Sequence[PriceItem],
        effective_at: datetime | None,
    ) -> PriceSetView:
        station = self.stations.get(station_id)
        if station is None:
            raise NotFound(f"there is no station {station_id}")
        unknown = sorted({item.grade for item in items} - set(station.prices))
        if unknown:
            raise BadRequest(f"station {station_id} sells no grade {unknown[0]}", grades=unknown)
        if effective_at is None:
            station.prices.update({item.grade: item.unit_price_mfen_per_l for item in items})
        self._price_sets += 1
        status = "active" if effective_at is None else "scheduled"
        return PriceSetView(self._price_sets, station_id, status, list(items), effective_at)

    async def set_pump_open(
        self, staff_id: str, station_id: str, pump_no: int, open: bool
    ) -> PumpView:
        pump = self._pump(station_id, pump_no)
        pump.open = open
        return pump.view()
