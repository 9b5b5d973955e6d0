"""The payable buffer's side of a PumpActor: strangers at its head, post-pay sales, collecting.

A completed sale at the head of the pump's buffer that the switch did not authorize is
one of two things. In stand-alone mode (FLAGS b5: the pump authorizes itself when a
nozzle is lifted) it is a *payable* sale: the common Chinese forecourt flow, where the
customer fuels first and pays in the mini-program after. It is journaled ``payable``
once, with its figures, and left in the buffer for an order to lock, pay and collect.
In host-controlled mode nobody should have sold it: it is an *orphan*, with an alert.
Either way the known volume totals move past it, so the gap check before the next
AUTHORIZE stays right.

Locking and collecting are write-ahead like everything else: ``lock_requested`` before
LOCK_SALE and ``locked`` after; ``collect_requested`` before CLEAR_SALE and ``collected``
after. A ``collect_requested`` without ``collected`` is finished by the next poll or the
next start, whichever comes first. GFD-1 has no unlock command: ``unlocked`` only tells
the switch that another order may lock the sale (the pump keeps it LOCKED, which does
not stop a second LOCK_SALE).

A stand-alone sale that ends behind an unpaid head is journaled ``payable`` from the
point's display while it still shows it (``queued``): its block is unreadable until the
head is cleared, which may never happen (a customer who does not pay).

The head may also be an earlier sale of the switch's own, one that ended behind payable
sales and could not be cleared then (its token is remembered in the ledger): it is
cleared now, and checked against what was journaled for it.
"""

from __future__ import annotations

import secrets
from typing import Any

from .crashpoints import crash_point
from .driver import CommandRefused
from .gfd1.codec import SaleRecord, StatusBlock
from .gfd1.states import Flag, FPState
from .pump_base import as_payload, volumes
from .pump_book import PayableSale
from .pump_lookup import PumpLookup
from .pump_messages import AlertKind, CollectSale, LockSale, SaleNotPayable, UnlockSale
from .recovery import LIVE, moved_since


class PumpBuffer(PumpLookup):
    # -- what heads the buffer ---------------------------------------------------------------

    async def _buffer_head(self, head: SaleRecord, status: StatusBlock) -> bool:
        """Journal (or clear) the sale at the head if it is news; True if the pump changed."""
        book = self.ledger.book
        ours = book.uncleared.get(head.auth_token) if head.auth_token else None
        if ours is not None:
            await self._clear_ours(head, ours)
            return True
        standalone = Flag.STAND_ALONE in status.flags
        if head.seq in self.ledger.orphan_seqs or head.seq in book.payable_seqs:
            if standalone:
                await self._payable_from_display(status)
            return False
        if standalone:
            if await self._payable_from_head(head):
                return True
            await self._payable_from_display(status)
            return False
        if status.fp_state is FPState.COMPLETED:
            await self._orphan_from_head(head)
        return False

    def _standalone_explains(self, status: StatusBlock) -> bool:
        """Totals moved past what the journal knows, and a stand-alone pump has sales in
        its buffer the switch has not seen yet (or one in progress): they surface as
        payable sales in turn, so the difference is not an orphan."""
        if Flag.STAND_ALONE not in status.flags:
            return False
        return status.fp_state in LIVE or status.unpaid_count > len(self.ledger.book.payables)

    async def _standalone_explains_now(self, status: StatusBlock) -> bool:
        """``_standalone_explains``, asked again of a status read after the totals when
        ``status`` (read before them) does not explain them: a stand-alone sale that starts
        between the two reads moves the totals while ``status`` still shows the point at
        rest. Taken for an orphan, its first litres were counted twice, once in the orphan
        and once in the payable sale (seen after a restart under load: 28 mL)."""
        if self._standalone_explains(status):
            return True
        if Flag.STAND_ALONE not in status.flags:
            return False
        return self._standalone_explains(await self.driver.status())

    def _payables_ahead(self, status: StatusBlock) -> bool:
        """The buffer is headed by a journaled payable sale: a prepay sale may queue
        behind it (the pump refuses with BUFFER_FULL when it must)."""
        head = status.last_sale
        return head is not None and head.seq in self.ledger.book.payable_seqs

    async def _forget_gone(self, status: StatusBlock) -> None:
        """Payable sales no longer in the buffer (the buffer is FIFO: every sale older than
        its head is gone) were cleared outside the switch, at the console."""
        head = status.last_sale
        for sale in self.ledger.book.payables:
            if head is None or sale.pump_sale_seq < head.seq:
                payload = {"pump_sale_seq": sale.pump_sale_seq, "locked_by": sale.locked_by}
                await self._record("payable_gone", payload)
                if sale.locked_by is not None:
                    await self._alert(
                        AlertKind.PAYABLE_GONE,
                        f"sale {sale.pump_sale_seq} locked by {sale.locked_by} was cleared "
                        "outside the switch",
                        order=sale.locked_by,
                    )

    async def _payable_from_head(self, head: SaleRecord) -> bool:
        known = self.ledger.volume_totals.get(head.nozzle, head.start_volume_total_ml)
        end = max(known, head.end_volume_total_ml)  # never move the known totals back
        await self._record(
            "payable",
            {
                "pump_sale_seq": head.seq,
                "nozzle": head.nozzle,
                "volume_ml": head.volume_ml,
                "amount_fen": head.amount_fen,
                "unit_price": head.unit_price,
                "price_set_id": head.price_set_id,
                "end_reason": int(head.end_reason),
                "auth_token": head.auth_token,
                "moved": as_payload({head.nozzle: end - known}),
                "end_totals": as_payload({head.nozzle: end}),
            },
        )
        if head.volume_ml:
            return False
        # Nothing to pay for: a zero sale would only block the buffer.
        await self._record("collect_requested", {"pump_sale_seq": head.seq, "order_id": None})
        await self._collect_pending()
        return True

    async def _payable_from_display(self, status: StatusBlock) -> None:
        """A stand-alone sale that ended *behind* the head cannot be read from the buffer
        (only the head's sale block can), and the head may wait for its customer for
        ever. While the point still shows that sale (COMPLETED: nobody lifted a nozzle
        since) and the totals moved past what the journal knows by exactly its volume on
        one nozzle, the display is that sale: journaled ``payable`` now, with its own
        number, so every dispensed litre is in the journal before it reaches the head
        (where its number says it is known already). Two or more sales behind the head
        unseen (a switch down while both were sold) cannot be told apart: they wait."""
        if not self._unseen_behind_head(status):
            return
        totals = await self.driver.totals()
        moved = moved_since(self.ledger.volume_totals, volumes(totals))
        if len(moved) != 1:
            return
        ((nozzle, volume),) = moved.items()
        if volume <= 0 or abs(volume - status.cur_volume_ml) > 1:
            return
        end = volumes(totals)[nozzle]
        await self._record(
            "payable",
            {
                "pump_sale_seq": status.cur_sale_seq,
                "nozzle": nozzle,
                "volume_ml": status.cur_volume_ml,
                "amount_fen": status.cur_amount_fen,
                "unit_price": status.cur_unit_price,
                "price_set_id": status.price_set_id,
                "end_reason": None,
                "auth_token": status.cur_auth_token,
                "moved": as_payload({nozzle: volume}),
                "end_totals": as_payload({nozzle: end}),
                "queued": True,
            },
        )

    def _unseen_behind_head(self, status: StatusBlock) -> bool:
        """The buffer holds more sales than the journal knows of, no sale of ours is open,
        and the point still displays a finished sale that is neither the head nor known."""
        book, head = self.ledger.book, status.last_sale
        seq = status.cur_sale_seq
        return (
            self.ledger.open_sale is None
            and status.fp_state is FPState.COMPLETED
            and status.unpaid_count > len(book.payables) + len(book.uncleared)
            and head is not None
            and seq != head.seq
            and seq not in book.payable_seqs
            and seq not in self.ledger.orphan_seqs
            and status.cur_auth_token not in book.uncleared
            and status.cur_volume_ml > 0
        )

    async def _clear_ours(self, head: SaleRecord, sale_id: str) -> None:
        """An earlier sale of ours, queued behind others, reached the head: clear it."""
        await self._clear_head(head.seq)
        report = self.ledger.book.finished.get(sale_id)
        await self._record("cleared", {"sale_id": sale_id, "pump_sale_seq": head.seq})
        if report is None:
            return
        journaled = report.volume_ml or 0  # a void sale: none
        if journaled != head.volume_ml:
            await self._alert(
                AlertKind.TOTALS_MISMATCH,
                f"sale {head.seq}: {sale_id} was journaled with {journaled} mL, its sale "
                f"block says {head.volume_ml} mL",
                sale=sale_id,
            )

    async def _clear_head(self, seq: int) -> None:
        """CLEAR_SALE ``seq``; refused because it was cleared already (a crash between the
        command and its journal event) counts as done."""
        try:
            await self.driver.clear_sale(seq)
        except CommandRefused:
            status = await self.driver.status()
            if status.last_sale is not None and status.last_sale.seq == seq:
                raise

    # -- orphans -----------------------------------------------------------------------------

    async def _orphan_from_head(self, head: SaleRecord) -> None:
        """A completed sale the switch did not authorize heads the buffer of a pump in
        host mode. It is journaled once and left there: collecting it is not the pump
        actor's call."""
        if head.seq in self.ledger.orphan_seqs:
            return
        known = self.ledger.volume_totals.get(head.nozzle, head.start_volume_total_ml)
        end = max(known, head.end_volume_total_ml)  # never move the known totals back
        sale = {
            "pump_sale_seq": head.seq,
            "volume_ml": head.volume_ml,
            "amount_fen": head.amount_fen,
        }
        await self._orphan({head.nozzle: end - known}, {head.nozzle: end}, sale)

    async def _orphan(
        self, moved: dict[int, int], end_totals: dict[int, int], sale: dict[str, Any]
    ) -> None:
        sale_id = f"orphan-{secrets.token_hex(6)}"
        payload = {
            "sale_id": sale_id,
            "moved": as_payload(moved),
            "end_totals": as_payload(end_totals),
            **sale,
        }
        await self._record("orphan", payload)
        detail = "a sale the switch did not authorize"
        await self._alert(AlertKind.ORPHAN_SALE, detail, sale=sale_id)

    # -- post-pay calls ----------------------------------------------------------------------

    def _payable_for(self, seq: int, order_id: str) -> PayableSale:
        sale = self.ledger.book.payable(seq)
        if sale is None:
            raise SaleNotPayable(f"{self.address}: sale {seq} is not in the payable buffer")
        if sale.locked_by not in (None, order_id):
            raise SaleNotPayable(f"{self.address}: sale {seq} is held by another order")
        return sale

    async def _lock_sale(self, msg: LockSale) -> PayableSale:
        seq, book = msg.pump_sale_seq, self.ledger.book
        sale = self._payable_for(seq, msg.order_id)
        if sale.locked_by == msg.order_id and seq in book.locked:
            return sale
        if book.payables[0].pump_sale_seq != seq:
            raise SaleNotPayable(f"{self.address}: sale {seq} is not the buffer's head")
        where = {"pump_sale_seq": seq, "order_id": msg.order_id}
        if sale.locked_by is None:
            await self._record("lock_requested", where)
            crash_point("pump.after_lock_requested")
        try:
            await self.driver.lock_sale(seq)
        except CommandRefused as exc:
            await self._record("unlocked", {**where, "reason": str(exc)})
            raise SaleNotPayable(f"{self.address}: sale {seq}: {exc}") from exc
        # PumpUnreachable: the order holds it (lock_requested); asking again resends.
        await self._record("locked", where)
        locked = self.ledger.book.payable(seq)
        assert locked is not None
        return locked

    async def _unlock_sale(self, msg: UnlockSale) -> None:
        book = self.ledger.book
        sale = book.payable(msg.pump_sale_seq)
        if sale is None or sale.locked_by is None:
            return
        self._payable_for(msg.pump_sale_seq, msg.order_id)
        if book.collecting is not None and book.collecting.pump_sale_seq == msg.pump_sale_seq:
            raise SaleNotPayable(f"{self.address}: sale {msg.pump_sale_seq} is being collected")
        await self._record(
            "unlocked", {"pump_sale_seq": msg.pump_sale_seq, "order_id": msg.order_id}
        )

    async def _collect_sale(self, msg: CollectSale) -> None:
        seq, book = msg.pump_sale_seq, self.ledger.book
        if seq in book.collected and book.collected[seq] == msg.order_id:
            return
        pending = book.collecting
        if pending is not None and pending.pump_sale_seq == seq:
            if pending.order_id != msg.order_id:
                raise SaleNotPayable(f"{self.address}: sale {seq} is collected by another order")
            await self._collect_pending()
            return
        sale = self._payable_for(seq, msg.order_id)
        if sale.locked_by != msg.order_id or seq not in book.locked:
            raise SaleNotPayable(f"{self.address}: sale {seq} is not locked by {msg.order_id}")
        if pending is not None:
            await self._collect_pending()  # another collection first: one at a time
        await self._record("collect_requested", {"pump_sale_seq": seq, "order_id": msg.order_id})
        crash_point("pump.after_collect_requested")
        await self._collect_pending()

    async def _collect_pending(self) -> None:
        pending = self.ledger.book.collecting
        assert pending is not None
        sale = self.ledger.book.payable(pending.pump_sale_seq)
        await self._clear_head(pending.pump_sale_seq)
        payload: dict[str, Any] = {
            "pump_sale_seq": pending.pump_sale_seq,
            "order_id": pending.order_id,
        }
        if sale is not None:
            payload.update(volume_ml=sale.volume_ml, amount_fen=sale.amount_fen)
        await self._record("collected", payload)
