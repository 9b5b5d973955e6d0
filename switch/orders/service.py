"""The switch behind the customer and station API (:class:`switch.service.SwitchService`).

Reads come from the database (stations, prices, the order projection) and from the pump
actors' snapshots (live pump state, which only they know). Writes that start something are
checked here before anything is held: the station is open, the pump is open and free, the
pump sale is the one at the head of its buffer; then the order row is inserted under the
pump's row lock (one live prepay order per pump, one live order per buffered sale), its
journal stream is opened with ``created``, and its actor is started.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
import trio

from actors import ActorError, ActorSystem, CallTimeout
from devices.pump_messages import Close as PumpClose
from devices.pump_messages import Open as PumpOpen
from devices.pump_messages import PayableSales, SetPrices
from switch.service import (
    BadRequest,
    Conflict,
    CreateOrder,
    Flow,
    NotFound,
    OrderView,
    PayableSaleView,
    PayPumpSale,
    PriceItem,
    PriceSetView,
    PumpView,
    RefundView,
    StationView,
    Unavailable,
)
from switch.stations.prices import apply_price_set, prices_for_pump
from switch.stations.queries import (
    FreePumps,
    pump_nozzles,
    set_pump_open,
    station,
    stations_near,
)
from switch.store.bridge import Transaction
from switch.store.errors import UniqueViolation
from switch.store.journal import Event
from switch.store.orders import order_row

from .deps import OrderDeps, pump_address
from .directory import OrderDirectory
from .messages import Cancel, RequestRefund, Wake
from .model import OrderData
from .views import view_from_row

__all__ = ["OrderService"]

log = structlog.get_logger("orders")

MAX_PRESET_FEN = 500_000  # 5,000 yuan: more than any tank, less than a typo
MAX_PRESET_ML = 500_000
_FREE_STATES = frozenset({"IDLE", "CALLING"})
_METHODS = frozenset({"wechatpay", "alipay", "unionpay"})


async def _insert_live_order(tx: Transaction, data: OrderData, now: datetime) -> None:
    """The order's row, under its pump's row lock: one live prepay order per pump."""
    await tx.execute(
        "SELECT 1 FROM pumps WHERE station_id = $1 AND pump_no = $2 FOR UPDATE",
        data.station_id,
        data.pump_no,
    )
    if data.flow == "prepay":
        live = await tx.fetchval(
            "SELECT id FROM orders WHERE station_id = $1 AND pump_no = $2"
            " AND NOT terminal AND flow = 'prepay'",
            data.station_id,
            data.pump_no,
        )
        if live is not None:
            raise Conflict(
                f"pump {data.pump_no} already has a live order ({live})",
                code="pump-busy",
            )
    await tx.execute(
        "INSERT INTO orders (id, customer_id, station_id, pump_no, flow, preset_kind,"
        " preset_value, state, method, payer_id, nozzle_no, coupon, pump_sale_seq,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8,"
        " $9, $10, $11, $12, $13, $13)",
        data.id,
        data.customer_id,
        data.station_id,
        data.pump_no,
        data.flow,
        data.preset_kind,
        data.preset_value,
        data.method,
        data.payer_id,
        data.nozzle_no,
        data.coupon,
        data.pump_sale_seq,
        now,
    )


def new_order_id() -> str:
    return "O" + secrets.token_hex(8).upper()


class OrderService:
    def __init__(
        self,
        system: ActorSystem,
        deps: OrderDeps,
        directory: OrderDirectory,
        *,
        create_wait_s: float = 5.0,
    ) -> None:
        self.system = system
        self.deps = deps
        self.directory = directory
        self.create_wait_s = create_wait_s
        self.draining = False
        self.created = 0

    # -- pumps, stations -----------------------------------------------------------------------

    def _pump_state(self, station_id: str, pump_no: int) -> dict[str, Any] | None:
        try:
            return self.system.snapshot(pump_address(station_id, pump_no)).state
        except ActorError:
            return None

    def _free(self, state: dict[str, Any] | None) -> bool:
        return (
            state is not None
            and state.get("state") in _FREE_STATES
            and state.get("open_sale") is None
            and state.get("admin") == "open"
        )

    async def _pumps(self, station_id: str | None = None) -> dict[str, list[tuple[int, bool]]]:
        """station -> [(pump number, open)] of the pumps that have nozzles (all stations, or
        one)."""
        rows = await self.deps.db.fetch(
            "SELECT p.station_id, p.pump_no, p.open FROM pumps p"
            " WHERE ($1::text IS NULL OR p.station_id = $1) AND EXISTS (SELECT 1 FROM nozzles n"
            " WHERE n.station_id = p.station_id AND n.pump_no = p.pump_no)"
            " ORDER BY p.station_id, p.pump_no",
            station_id,
        )
        known: dict[str, list[tuple[int, bool]]] = {}
        for r in rows:
            known.setdefault(r["station_id"], []).append((int(r["pump_no"]), bool(r["open"])))
        return known

    def _free_pumps(self, known: dict[str, list[tuple[int, bool]]]) -> FreePumps:
        """How many of a station's pumps a customer could start on now, from the pump actors'
        snapshots (cheap and synchronous, as the station views want it)."""

        def count(station_id: str) -> tuple[int, int]:
            pumps = known.get(station_id, [])
            free = sum(
                1 for n, is_open in pumps if is_open and self._free(self._pump_state(station_id, n))
            )
            return free, len(pumps)

        return count

    async def stations_near(
        self, lat_e6: int, lon_e6: int, radius_m: int, limit: int
    ) -> Sequence[StationView]:
        free = self._free_pumps(await self._pumps())
        return await stations_near(
            self.deps.db, lat_e6, lon_e6, radius_m, limit, self.deps.clock(), free
        )

    async def station(self, station_id: str) -> StationView:
        free = self._free_pumps(await self._pumps(station_id))
        return await station(self.deps.db, station_id, now=self.deps.clock(), free_pumps=free)

    async def pumps(self, station_id: str) -> Sequence[PumpView]:
        """The station's pumps: one query for the nozzles and one for the live orders of
        the whole station, not two per pump (customers waiting to pay poll this, and under
        load 23 statements a request queued thousands of calls on the database)."""
        db = self.deps.db
        await station(db, station_id)  # NotFound for an unknown station
        nozzles: dict[int, dict[int, str]] = {}
        for row in await db.fetch(
            "SELECT pump_no, nozzle_no, grade_code FROM nozzles WHERE station_id = $1"
            " ORDER BY pump_no, nozzle_no",
            station_id,
        ):
            nozzles.setdefault(int(row["pump_no"]), {})[int(row["nozzle_no"])] = str(
                row["grade_code"]
            )
        live = {
            int(row["pump_no"]): str(row["id"])
            for row in await db.fetch(
                "SELECT DISTINCT ON (pump_no) pump_no, id FROM orders WHERE station_id = $1"
                " AND NOT terminal AND flow = 'prepay' ORDER BY pump_no, created_at DESC",
                station_id,
            )
        }
        views = []
        for pump_no, is_open in (await self._pumps(station_id)).get(station_id, []):
            views.append(
                await self._pump_view(
                    station_id,
                    pump_no,
                    is_open,
                    known=(nozzles.get(pump_no, {}), live.get(pump_no)),
                )
            )
        return views

    async def _pump_view(
        self,
        station_id: str,
        pump_no: int,
        is_open: bool,
        *,
        known: tuple[Mapping[int, str], str | None] | None = None,
    ) -> PumpView:
        """``known``: the pump's nozzles and live prepay order, read already."""
        if known is None:
            nozzles: Mapping[int, str] = await pump_nozzles(self.deps.db, station_id, pump_no)
        else:
            nozzles = known[0]
        state = self._pump_state(station_id, pump_no)
        payable: list[PayableSaleView] = []
        if state is not None:
            try:
                sales = await self.system.call(
                    pump_address(station_id, pump_no), PayableSales(), timeout=2.0
                )
            except (ActorError, trio.TooSlowError):
                sales = ()
            payable.extend(
                PayableSaleView(
                    s.pump_sale_seq,
                    s.nozzle,
                    nozzles.get(s.nozzle),
                    s.volume_ml,
                    s.amount_fen,
                    s.unit_price,
                    s.locked_by,
                )
                for s in sales
            )
        if known is None:
            live = await self.deps.db.fetchval(
                "SELECT id FROM orders WHERE station_id = $1 AND pump_no = $2 AND NOT terminal"
                " AND flow = 'prepay' ORDER BY created_at DESC LIMIT 1",
                station_id,
                pump_no,
            )
        else:
            live = known[1]
        fp = "offline" if state is None else str(state.get("state") or "offline").lower()
        if state is not None and state.get("admin") != "open":
            fp = "closed"
        return PumpView(
            station_id=station_id,
            pump_no=pump_no,
            state=fp,
            open=is_open,
            free=is_open and self._free(state) and live is None,
            nozzles=nozzles,
            current_order=live,
            payable=payable,
        )

    # -- orders ----------------------------------------------------------------------------

    def _check_method(self, method: str) -> None:
        if method not in _METHODS:
            raise BadRequest(f"unknown payment method {method!r}; use one of {sorted(_METHODS)}")

    async def _check_station_open(self, station_id: str) -> None:
        view = await station(self.deps.db, station_id, now=self.deps.clock())
        if not view.open_now:
            raise Conflict(f"station {station_id} is closed now", code="station-closed")

    async def create_order(self, customer_id: str, request: CreateOrder) -> OrderView:
        if self.draining:
            raise Unavailable("the switch is not taking new orders now (draining)")
        self._check_method(request.method)
        limit = MAX_PRESET_FEN if request.preset_kind.value == "amount" else MAX_PRESET_ML
        if not 0 < request.preset_value <= limit:
            raise BadRequest(f"preset_value must be within 1..{limit} ({request.preset_kind})")
        await self._check_station_open(request.station_id)
        nozzles = await pump_nozzles(self.deps.db, request.station_id, request.pump_no)
        if request.nozzle_no is not None and request.nozzle_no not in nozzles:
            raise BadRequest(f"pump {request.pump_no} has no nozzle {request.nozzle_no}")
        if request.coupon:
            self.deps.promotions.get(request.coupon)
        state = self._pump_state(request.station_id, request.pump_no)
        if not self._free(state):
            shown = "offline" if state is None else str(state.get("state")).lower()
            raise Conflict(
                f"pump {request.pump_no} at {request.station_id} is not free ({shown})",
                code="pump-busy",
            )
        data = OrderData(
            id=request.order_id or new_order_id(),
            customer_id=customer_id,
            station_id=request.station_id,
            pump_no=request.pump_no,
            flow=Flow.PREPAY.value,
            method=request.method,
            payer_id=request.payer_id,
            preset_kind=request.preset_kind.value,
            preset_value=request.preset_value,
            nozzle_no=request.nozzle_no,
            coupon=request.coupon,
        )
        return await self._start(data)

    async def pay_pump_sale(self, customer_id: str, request: PayPumpSale) -> OrderView:
        if self.draining:
            raise Unavailable("the switch is not taking new orders now (draining)")
        self._check_method(request.method)
        await pump_nozzles(self.deps.db, request.station_id, request.pump_no)
        if request.coupon:
            self.deps.promotions.get(request.coupon)
        try:
            sales = await self.system.call(
                pump_address(request.station_id, request.pump_no), PayableSales(), timeout=5.0
            )
        except (ActorError, trio.TooSlowError) as exc:
            raise Unavailable(f"pump {request.pump_no} is not reachable now") from exc
        if not sales:
            raise Conflict(
                f"pump {request.pump_no} has no sale waiting to be paid", code="no-payable-sale"
            )
        head = sales[0]
        if request.pump_sale_seq is not None and request.pump_sale_seq != head.pump_sale_seq:
            raise Conflict(
                f"sale {request.pump_sale_seq} is not the next one to pay at pump"
                f" {request.pump_no} (that is sale {head.pump_sale_seq})",
                code="sale-not-payable",
            )
        data = OrderData(
            id=request.order_id or new_order_id(),
            customer_id=customer_id,
            station_id=request.station_id,
            pump_no=request.pump_no,
            flow=Flow.POSTPAY.value,
            method=request.method,
            payer_id=request.payer_id,
            coupon=request.coupon,
            pump_sale_seq=head.pump_sale_seq,
        )
        return await self._start(data)

    async def _start(self, data: OrderData) -> OrderView:
        """Row (under the pump's lock), then journal, then actor: a crash in between leaves
        a row without a journal, which recovery closes as failed (nothing was sent)."""
        db = self.deps.db
        now = self.deps.clock()
        try:
            await db.atomic(_insert_live_order, data, now)
        except UniqueViolation as exc:
            with contextlib.suppress(NotFound):  # the same request, run twice at once
                return await self.order(data.customer_id, data.id)
            raise Conflict(
                f"sale {data.pump_sale_seq} at pump {data.pump_no} is already being paid",
                code="sale-not-payable",
            ) from exc
        await self.deps.journal.append(
            f"order:{data.id}", [Event("created", {"order": data.to_json()})], expected_seq=0
        )
        self.created += 1
        await self.directory.ensure(data.id)
        return await self._settled_view(data.id)

    async def _settled_view(self, order_id: str) -> OrderView:
        """Let the new order take its first steps, up to the hold's first answer, so that the
        response carries what the mini-program needs to pay (WeChat's prepay parameters).
        Bounded: a slow provider leaves the order holding, and the customer follows it."""
        with contextlib.suppress(CallTimeout):
            await self.directory.call(order_id, Wake("created"), timeout=self.create_wait_s)
        return await self._view(order_id)

    async def _view(self, order_id: str) -> OrderView:
        row = await order_row(self.deps.db, order_id)
        if row is None:
            raise NotFound(f"no order {order_id!r}", code="order-not-found")
        return view_from_row(row)

    async def order(self, customer_id: str, order_id: str) -> OrderView:
        view = await self._view(order_id)
        if view.customer_id != customer_id:
            raise NotFound(f"no order {order_id!r}", code="order-not-found")
        return view

    async def cancel_order(self, customer_id: str, order_id: str) -> OrderView:
        await self.order(customer_id, order_id)
        await self.directory.call(order_id, Cancel(customer_id))
        return await self._view(order_id)

    async def refund_order(
        self, customer_id: str, order_id: str, amount_fen: int, reason: str, request_key: str
    ) -> RefundView:
        await self.order(customer_id, order_id)
        if amount_fen <= 0:
            raise BadRequest("amount_fen must be at least 1")
        view: RefundView = await self.directory.call(
            order_id, RequestRefund(amount_fen, reason, request_key, customer_id)
        )
        return view

    # -- staff -----------------------------------------------------------------------------

    async def set_prices(
        self,
        staff_id: str,
        station_id: str,
        items: Sequence[PriceItem],
        effective_at: datetime | None,
        *,
        actor: str | None = None,
    ) -> PriceSetView:
        """Apply or stage a price set; applied prices go to the pumps at once. ``actor`` is
        the audit log's who when it is not a staff member (an operator on the admin socket)."""
        view = await apply_price_set(
            self.deps.db, staff_id, station_id, items, effective_at, actor=actor
        )
        if view.status == "applied":
            await self.push_prices(station_id)
        return view

    async def push_prices(self, station_id: str) -> None:
        """Send the set in force to every pump of the station (each applies it once free)."""
        for pump_no, _ in (await self._pumps(station_id)).get(station_id, []):
            prices: SetPrices | None = await prices_for_pump(self.deps.db, station_id, pump_no)
            if prices is None:
                continue
            try:
                await self.system.call(pump_address(station_id, pump_no), prices, timeout=10.0)
            except Exception as exc:  # the pump applies it on its next start from the DB
                log.warning("prices.push_failed", station=station_id, pump=pump_no, error=str(exc))

    async def set_pump_open(
        self, staff_id: str, station_id: str, pump_no: int, open: bool, *, actor: str | None = None
    ) -> PumpView:
        await set_pump_open(self.deps.db, staff_id, station_id, pump_no, open, actor=actor)
        try:
            await self.system.call(
                pump_address(station_id, pump_no), PumpOpen() if open else PumpClose(), timeout=10.0
            )
        except Exception as exc:  # the row is the truth; the pump actor reads it on restart
            log.warning("pump.admin_failed", station=station_id, pump=pump_no, error=str(exc))
        return await self._pump_view(station_id, pump_no, open)

    def statistics(self) -> dict[str, Any]:
        return {"created": self.created, "draining": self.draining}
