"""The pump half of an OrderActor: authorize, follow the sale, and post-pay lock and collect.

The PumpActor is the only code that commands the dispenser, and it journals its own steps
write-ahead; the order journals its intent (``auth_requested``, ``collect_requested``) and asks
the pump, which answers idempotently by sale id or sale number. When the order does not know
how a command ended (a timeout, a crash) it asks the pump's record (``SaleStatus``), never the
dispenser directly, and never authorizes twice: the pump refuses a finished sale id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

import structlog
import trio

from actors import ActorError
from devices.driver import DriverError
from devices.gfd1.states import PresetType
from devices.pump_messages import (
    Authorize,
    Authorized,
    CollectSale,
    PumpBusy,
    SaleFinished,
    SaleReport,
    SaleStatus,
    Stop,
    Subscribe,
    Unsubscribe,
)

from .deps import pump_address
from .model import OrderState
from .payment_steps import PaymentSteps
from .pricing_step import sale_discount

__all__ = ["PumpSteps"]

log = structlog.get_logger("orders")

_LIVE: Final = frozenset({"auth_requested", "authorized", "fuelling"})


class PumpSteps(PaymentSteps):
    """Authorize, follow the sale, collect: the pump side of the order."""

    async def _subscribe(self) -> None:
        if not self.subscribed:
            await self.pump_call(Subscribe(str(self.address)))
            self.subscribed = True

    async def _unsubscribe(self) -> None:
        if self.subscribed:
            self.subscribed = False
            # the pump forgets a subscriber that is gone when it next publishes
            with contextlib.suppress(ActorError, trio.TooSlowError, DriverError, PumpBusy):
                await self.pump_call(Unsubscribe(str(self.address)))

    # -- prepay: authorize and follow ------------------------------------------------------------

    async def step_authorize(self) -> bool:
        o = self.order
        assert o.sale_id is not None and o.priced is not None
        if o.cancel_requested:
            return await self._cancel_authorizing()
        preset_type = PresetType.AMOUNT if o.data.preset_kind == "amount" else PresetType.VOLUME
        mask = 0 if o.data.nozzle_no is None else 1 << (o.data.nozzle_no - 1)
        try:
            await self._subscribe()
            answer = await self.pump_call(
                Authorize(o.sale_id, preset_type, o.data.preset_value or 0, mask, self.order_id)
            )
        except SaleFinished:
            return await self._look_up_sale()
        except PumpBusy as exc:  # closed, busy, or the command refused: nothing was authorized
            await self.record("failure", {"failure": f"the pump refused: {exc}"})
            return await self.start_release(OrderState.FAILED)
        except (ActorError, trio.TooSlowError, DriverError) as exc:
            log.info("order.authorize_unknown", order=self.order_id, error=str(exc))
            return await self._look_up_sale(retry=True)
        assert isinstance(answer, Authorized)
        await self.record("authorized", {"token": answer.token, "sale_id": o.sale_id})
        self._schedule(self.deps.timings.pump_check_s)
        return True

    async def _sale_report(self) -> SaleReport | None:
        """The pump's record of our sale; None (and a wake later) when the pump actor does
        not answer now."""
        assert self.order.sale_id is not None
        try:
            report: SaleReport = await self.pump_call(SaleStatus(self.order.sale_id))
        except (ActorError, trio.TooSlowError) as exc:
            log.info("order.pump_unreachable", order=self.order_id, error=str(exc))
            self._schedule(self.deps.timings.pump_check_s)
            return None
        return report

    async def _cancel_authorizing(self) -> bool:
        """Cancelled while the authorization may be out: only a pump whose record has never
        heard of the sale lets the hold go at once; an authorized one is stopped first."""
        report = await self._sale_report()
        if report is None:
            return False
        state = report.state.value
        if state == "unknown":
            return await self.start_release(OrderState.CANCELLED)
        if state in ("completed", "void"):
            return await self._sale_ended(report)
        await self.stop_pump()
        self._schedule(self.deps.timings.pump_check_s)
        return False

    async def _look_up_sale(self, *, retry: bool = False) -> bool:
        """What the pump's record says about our sale, after a command with no answer."""
        o = self.order
        report = await self._sale_report()
        if report is None:
            return False
        state = report.state.value
        if state == "completed" or state == "void":
            return await self._sale_ended(report)
        if state in _LIVE and o.state is OrderState.AUTHORIZING:
            await self.record("authorized", {"token": None, "sale_id": o.sale_id})
            return True
        if state == "fuelling" and o.state is OrderState.AUTHORIZED:
            await self.record("fuelling", {"sale_id": o.sale_id})
            return True
        if state == "unknown" and o.state is OrderState.AUTHORIZING and retry:
            self._schedule(self.deps.timings.pump_check_s)  # the pump never took it: ask again
        return False

    async def _sale_ended(self, report: SaleReport) -> bool:
        o = self.order
        assert o.sale_id is not None
        volume = report.volume_ml or 0
        gross = report.amount_fen or 0
        grade = o.priced.grade if o.priced else None
        await self.record(
            "sale_completed",
            {
                "sale_id": o.sale_id,
                "volume_ml": volume,
                "amount_fen": gross,
                "nozzle_no": report.nozzle,
                "unit_price": report.unit_price,
                "reconstructed": bool(report.reconstructed),
                "pump_sale_seq": report.pump_sale_seq,
                "discount_fen": sale_discount(self.deps, o.data, gross, grade) if gross else 0,
                "void": report.state.value == "void",
            },
        )
        await self._unsubscribe()
        return True

    async def step_watch_sale(self) -> bool:
        """Authorized or fuelling: the pump's events move us; this looks at its record when a
        wake comes, in case an event was missed (a restart of either side)."""
        o = self.order
        since = o.holds[-1].sent_at if o.holds else self.now()
        if (self.now() - since).total_seconds() > self.deps.timings.sale_deadline_s:
            return await self._sale_lost()
        try:
            await self._subscribe()
        except (ActorError, trio.TooSlowError) as exc:
            log.info("order.pump_unreachable", order=self.order_id, error=str(exc))
        progressed = await self._look_up_sale()
        if not progressed:
            self._schedule(self.deps.timings.pump_check_s)
        return progressed

    async def _sale_lost(self) -> bool:
        """Past the sale deadline the pump has not finished the sale, and it could not be
        finished from totals: give the customer's money back and tell a person."""
        await self.alert(
            "sale_lost",
            "critical",
            sale=self.order.sale_id,
            pump=pump_address(self.order.data.station_id, self.order.data.pump_no),
        )
        await self.record("failure", {"failure": "the pump never finished the sale"})
        return await self.start_release(OrderState.FAILED)

    async def pump_event(self, kind: str, data: Mapping[str, Any]) -> None:
        o = self.order
        if kind == "authorized" and o.state is OrderState.AUTHORIZING:
            await self.record("authorized", {"token": data.get("token"), "sale_id": o.sale_id})
        elif kind == "fuelling" and o.state is OrderState.AUTHORIZED:
            await self.record("fuelling", {"sale_id": o.sale_id})
        elif kind in ("completed", "void") and o.state in (
            OrderState.AUTHORIZING,
            OrderState.AUTHORIZED,
            OrderState.FUELLING,
        ):
            await self._look_up_sale()

    async def stop_pump(self) -> None:
        """Cancel before fuelling: STOP ends an authorized sale with nothing dispensed (the
        pump then voids it, and the void releases the hold)."""
        try:
            await self.pump_call(Stop())
        except (ActorError, trio.TooSlowError, DriverError, PumpBusy) as exc:
            log.info("order.stop_failed", order=self.order_id, error=str(exc))

    # -- post-pay: lock, collect ---------------------------------------------------------------

    async def step_collecting(self) -> bool:
        o = self.order
        if o.collected:
            return await self.end(OrderState.COMPLETED)
        seq = o.data.pump_sale_seq
        assert seq is not None
        try:
            await self.pump_call(CollectSale(seq, self.order_id))
        except (ActorError, trio.TooSlowError, DriverError, PumpBusy) as exc:
            log.info("order.collect_pending", order=self.order_id, error=str(exc))
            self._schedule(self.deps.timings.pump_check_s)
            return False
        await self.record("collected", {"pump_sale_seq": seq})
        return await self.end(OrderState.COMPLETED)
