"""The PumpActor's read-only answers: how a sale went, what waits to be paid, the pump's face.

None of these talks to the pump: they are answered from the last status read and the
ledger (the folded journal), so an order or the HTTP API can ask as often as it likes
without taking a poll's place on the wire. A sale older than the ledger keeps
(:data:`devices.pump_book.FINISHED_KEPT`) is looked up in the pump's journal stream:
one query for that sale's own events, not a reload of the stream.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from switch.store.errors import StoreError

from .pump_admin import PumpAdmin
from .pump_book import FINISHED_KEPT, OPEN_PHASES, SalePhase, SaleReport, report_from_events
from .pump_messages import (
    LookupFailed,
    PayableSale,
    PayableSales,
    PumpInfo,
    PumpInfoReply,
    SaleStatus,
)

# A sale's own events, the ones that say how far it got.
_SALE_EVENTS: Final = ["auth_requested", "authorized", "fuelling", "completed", "void"]
_QUERY: Final = (
    "SELECT type, payload FROM journal WHERE stream_id = $1 AND type = ANY($2::text[]) "
    "AND payload->>'sale_id' = $3 ORDER BY seq"
)


class PumpLookup(PumpAdmin):
    async def _sale_report(self, sale_id: str) -> SaleReport:
        """From memory; from the journal only if the ledger has forgotten sales."""
        ledger = self.ledger
        sale = ledger.open_sale
        if sale is not None and sale.sale_id == sale_id:
            phase = OPEN_PHASES.get(ledger.open_sale_state or "", SalePhase.AUTH_REQUESTED)
            return SaleReport(sale_id, phase)
        report = ledger.book.finished.get(sale_id)
        if report is not None:
            return report
        if ledger.sales <= FINISHED_KEPT:  # the book holds every sale this pump finished
            return SaleReport(sale_id, SalePhase.UNKNOWN)
        try:
            rows = await self.journal.db.fetch(_QUERY, self.stream_id, _SALE_EVENTS, sale_id)
        except StoreError as exc:
            raise LookupFailed(f"{self.address}: sale {sale_id}: {exc}") from exc
        events: list[tuple[str, Any]] = [(r["type"], orjson.loads(r["payload"])) for r in rows]
        return report_from_events(sale_id, events)

    async def _sale_status(self, msg: SaleStatus) -> SaleReport:
        return await self._sale_report(msg.sale_id)

    async def _payable_sales(self, msg: PayableSales) -> tuple[PayableSale, ...]:
        return self.ledger.book.payables

    async def _pump_info(self, msg: PumpInfo) -> PumpInfoReply:
        return self.info()

    def info(self) -> PumpInfoReply:
        """The pump as the API shows it: the last status read and the ledger."""
        status, ledger = self.status, self.ledger
        online = status is not None and not self.offline
        sale = ledger.open_sale
        return PumpInfoReply(
            pump=str(self.address),
            fp_state=status.fp_state.name.lower() if online and status else "offline",
            online=online,
            admin=ledger.admin.value,
            open_sale=sale.sale_id if sale is not None else None,
            open_sale_order=sale.order_id if sale is not None else None,
            payable=ledger.book.payables,
            nozzles=len(ledger.volume_totals),
            price_set_id=status.price_set_id if status is not None else ledger.price_set_id,
            last_error=self.last_error,
        )
