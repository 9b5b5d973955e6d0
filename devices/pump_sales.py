"""The sale half of a PumpActor: authorize, follow, finish, clear; orphans and gaps.

Write-ahead (the GFD-1 spec's rules): start totals and ``auth_requested`` are journaled
before AUTHORIZE; ``authorized`` once the pump acknowledged (or, if that answer was lost,
once a poll sees the pump authorized with our token); ``fuelling`` at first flow; when
the sale has ended the sale block and end totals are read, the totals invariant checked
and ``completed`` (or, for a zero sale, ``void``) journaled - only then CLEAR_SALE, then
``cleared``. Whenever the pump's state and the journal part ways (a crash, a lost
answer, a power cut), the restart table (:mod:`devices.recovery`) decides, in ``init``
and in the poll loop alike.

Totals are the truth at the pump (ARCHITECTURE.md invariant 6): the end totals of one
sale are the start totals of the next, per nozzle. Litres that no journaled sale explains
become an ``orphan`` (an exception sale) with an alert, whether they show up as a foreign
sale at the head of the payable buffer or as a gap found before the next AUTHORIZE -
unless the pump is in stand-alone mode, where such sales are post-pay sales to collect
(:mod:`devices.pump_buffer`).

``Authorize`` is idempotent by sale id (the open sale's id answers again; a finished
sale's id raises ``SaleFinished``). A prepay sale may be authorized behind payable sales
waiting in the buffer; it then ends where its sale block cannot be read (only the head's
can): it is finished from the totals (volume and amount exact, the pump still showing our
token and the sale's figures on its display) and journaled ``queued``, and its record is
cleared when it reaches the head.
"""

from __future__ import annotations

import secrets
from typing import Any, Final

import trio

from .crashpoints import crash_point
from .driver import CommandRefused, PumpUnreachable
from .gfd1.codec import NozzleTotals, SaleRecord, StatusBlock
from .gfd1.states import FPState
from .pump_base import amounts, as_payload, pump_view, volumes
from .pump_book import SalePhase
from .pump_buffer import PumpBuffer
from .pump_journal import Admin
from .pump_messages import AlertKind, Authorize, Authorized, PumpBusy, PumpClosed, SaleFinished
from .recovery import LIVE, Action, decide, moved_since

FLOWING: Final = frozenset({FPState.FUELLING, FPState.SUSPENDED_FUELLING})
_READY: Final = frozenset({FPState.IDLE, FPState.CALLING})  # where a sale may start


def contact(status: StatusBlock, totals: tuple[NozzleTotals, ...]) -> dict[str, Any]:
    return {"boot_count": status.boot_count, "totals": as_payload(volumes(totals))}


class PumpSales(PumpBuffer):
    # -- authorize ---------------------------------------------------------------------------

    async def _authorize(self, msg: Authorize) -> Authorized:
        sale = self.ledger.open_sale
        if sale is not None and sale.sale_id == msg.sale_id:
            return Authorized(sale.sale_id, sale.token)  # asked again: nothing to send
        if (await self._sale_report(msg.sale_id)).state in (SalePhase.COMPLETED, SalePhase.VOID):
            raise SaleFinished(msg.sale_id)
        if self.recovered is None:
            raise PumpUnreachable(f"{self.address}: not yet reconciled with the pump")
        if self.ledger.admin is not Admin.OPEN:
            raise PumpClosed(f"{self.address} is {self.ledger.admin.value}")
        if not self._at_rest():
            raise PumpBusy(f"{self.address} has an open sale")
        status = await self.driver.status()
        await self._check_boot(status)
        if status.fp_state is FPState.CLOSED:
            raise PumpClosed(f"{self.address}: the pump is CLOSED")
        queueing = self._payables_ahead(status)
        if status.unpaid_count and not queueing:
            # A sale not journaled yet heads the buffer: the poll deals with it first.
            raise PumpBusy(f"{self.address}: {status.unpaid_count} uncollected sale(s)")
        if status.fp_state not in _READY and not (
            queueing and status.fp_state is FPState.COMPLETED
        ):
            raise PumpBusy(f"{self.address}: the pump is {status.fp_state.name}")
        price_set_id = status.price_set_id
        pending = self.ledger.pending_prices
        if pending is not None and await self._apply_pending_prices(status):
            price_set_id = pending.price_set_id  # the new prices go first
        totals = await self.driver.totals()
        await self._check_gap(totals, status)
        return await self._send_authorize(msg, price_set_id, totals)

    async def _send_authorize(
        self, msg: Authorize, price_set_id: int, totals: tuple[NozzleTotals, ...]
    ) -> Authorized:
        token = secrets.randbelow(0xFFFFFFFF) + 1
        nozzles = [
            n
            for n in range(1, len(totals) + 1)
            if not msg.nozzle_mask or msg.nozzle_mask >> (n - 1) & 1
        ]
        await self._record(
            "auth_requested",
            {
                "sale_id": msg.sale_id,
                "order_id": msg.order_id,
                "token": token,
                "nozzles": nozzles,
                "nozzle_mask": msg.nozzle_mask,
                "preset_type": int(msg.preset_type),
                "preset_value": msg.preset_value,
                "price_set_id": price_set_id,
                "start_totals": {str(n): totals[n - 1].volume_ml for n in nozzles},
                "start_amount_totals": {str(n): totals[n - 1].amount_fen for n in nozzles},
            },
        )
        crash_point("pump.after_auth_requested")
        try:
            await self.driver.authorize(
                token=token,
                nozzle_mask=msg.nozzle_mask,
                preset_type=msg.preset_type,
                preset_value=msg.preset_value,
            )
        except CommandRefused as exc:
            await self._record("void", {"sale_id": msg.sale_id, "reason": str(exc)})
            raise
        # PumpUnreachable: outcome unknown; the poll reads the pump and adopts or voids.
        crash_point("pump.after_authorize")
        await self._record("authorized", {"sale_id": msg.sale_id, "token": token})
        self._poll_soon()
        return Authorized(msg.sale_id, token)

    async def _check_gap(self, totals: tuple[NozzleTotals, ...], status: StatusBlock) -> None:
        """Start totals must equal the last known end totals; the difference is a sale
        nobody journaled: an orphan for it, and an alert (not for a stand-alone pump's
        buffered sales: they are journaled as payable when they reach the head)."""
        moved = moved_since(self.ledger.volume_totals, volumes(totals))
        gained = {n: v for n, v in moved.items() if v > 0}
        if gained and not await self._standalone_explains_now(status):
            sale_id = f"orphan-{secrets.token_hex(6)}"
            now = volumes(totals)
            await self._record(
                "orphan",
                {
                    "sale_id": sale_id,
                    "moved": as_payload(gained),
                    "end_totals": as_payload({n: now[n] for n in gained}),
                    "gap": True,
                },
            )
            await self._alert(
                AlertKind.TOTALS_GAP,
                f"start totals moved {gained} mL past the last known end totals",
                sale=sale_id,
            )
        if lost := {n: v for n, v in moved.items() if v < 0}:
            await self._alert(AlertKind.TOTALS_MISMATCH, f"totals went down by {lost} mL")

    # -- following the sale ----------------------------------------------------------------

    async def _follow_sale(self, status: StatusBlock) -> None:
        """A poll with a sale open: journal its steps while it is live; finish it after."""
        sale = self.ledger.open_sale
        assert sale is not None
        if status.fp_state in LIVE and status.cur_auth_token == sale.token:
            if self.ledger.open_sale_state == "auth_requested":  # the ack was lost
                await self._record("authorized", {"sale_id": sale.sale_id, "token": sale.token})
            if status.fp_state in FLOWING and self.ledger.open_sale_state != "fuelling":
                await self._record(
                    "fuelling", {"sale_id": sale.sale_id, "nozzle": status.active_nozzle}
                )
                crash_point("pump.fuelling")
            self._progress(status)
            return
        await self._reconcile(status)

    def _progress(self, status: StatusBlock) -> None:
        if not self.subscribers or status.fp_state not in FLOWING:
            return
        now = trio.current_time()
        if now - self._last_progress < self.progress_interval_s:
            return
        self._last_progress = now
        self._publish(
            "fuelling",
            {
                "sale_id": self.sale_id,
                "nozzle": status.active_nozzle,
                "volume_ml": status.cur_volume_ml,
                "amount_fen": status.cur_amount_fen,
                "unit_price": status.cur_unit_price,
                "suspended": status.fp_state is FPState.SUSPENDED_FUELLING,
            },
        )

    async def _reconcile(self, status: StatusBlock) -> str:
        """The restart table against the pump as it is now; carries the action out."""
        totals = await self.driver.totals()
        recovery = decide(self.ledger.journal_view(), pump_view(status, totals))
        await self._carry_out(recovery.action, status, totals, dict(recovery.moved))
        return recovery.action.name

    async def _check_boot(self, status: StatusBlock) -> str | None:
        """BOOT_COUNT changed since the journal last saw it: the pump may have lost the sale
        in progress. Alert, let the totals decide, then journal the new boot. Returns the
        restart rule's action if it ran."""
        known = self.ledger.boot_count
        if known is None or known == status.boot_count:
            return None
        await self._alert(
            AlertKind.BOOT_COUNT_CHANGED,
            f"BOOT_COUNT {known} -> {status.boot_count}: reconciled from totals",
            sale=self.sale_id,
        )
        action = await self._reconcile(status)
        await self._record("contact", contact(status, await self.driver.totals()))
        return action

    # -- finishing ---------------------------------------------------------------------------

    async def _carry_out(
        self,
        action: Action,
        status: StatusBlock,
        totals: tuple[NozzleTotals, ...],
        moved: dict[int, int],
    ) -> None:
        sale = self.ledger.open_sale
        head = status.last_sale
        if action is Action.FINISH_FROM_SALE_BLOCK and head is not None:
            if head.volume_ml == 0:  # a zero sale: STOP before flow, or the auth timed out
                void = {"sale_id": self.sale_id, "reason": head.end_reason.name.lower()}
                await self._record("void", {**void, "pump_sale_seq": head.seq})
                await self._clear_pending()
            else:
                await self._complete(head, totals)
        elif action is Action.FINISH_FROM_TOTALS and sale is not None:
            await self._complete_from_totals(status, totals, moved)
        elif action is Action.VOID and sale is not None:
            await self._record("void", {"sale_id": sale.sale_id, "reason": "no fuel dispensed"})
        elif action is Action.ORPHAN:
            if status.fp_state is FPState.COMPLETED and head is not None:
                await self._buffer_head(head, status)
            elif (gained := {n: v for n, v in moved.items() if v > 0}) and (
                not await self._standalone_explains_now(status)
            ):
                await self._orphan(gained, {n: volumes(totals)[n] for n in gained}, {})
        # ADOPT and NOTHING: the poll loop carries on watching.

    async def _complete(self, head: SaleRecord, totals: tuple[NozzleTotals, ...]) -> None:
        sale = self.ledger.open_sale
        assert sale is not None
        end = totals[head.nozzle - 1].volume_ml
        delta = end - sale.start_volume_totals.get(head.nozzle, head.start_volume_total_ml)
        totals_ok = abs(delta - head.volume_ml) <= 1 and head.end_volume_total_ml == end
        await self._record(
            "completed",
            {
                "sale_id": sale.sale_id,
                "pump_sale_seq": head.seq,
                "nozzle": head.nozzle,
                "volume_ml": head.volume_ml,
                "amount_fen": head.amount_fen,
                "unit_price": head.unit_price,
                "end_reason": int(head.end_reason),
                "price_set_id": head.price_set_id,
                "end_totals": as_payload(volumes(totals)),
                "reconstructed": False,
                "totals_ok": totals_ok,
            },
        )
        crash_point("pump.after_completed")
        if not totals_ok:
            await self._alert(
                AlertKind.TOTALS_MISMATCH,
                f"sale {head.seq}: totals moved {delta} mL, sale block says {head.volume_ml} mL",
                sale=sale.sale_id,
            )
        await self._clear_pending()

    async def _complete_from_totals(
        self, status: StatusBlock, totals: tuple[NozzleTotals, ...], moved: dict[int, int]
    ) -> None:
        """The sale block cannot be read: lost with the power (reconstructed, alerted), or
        queued behind other sales in the buffer. Queued, with the pump still showing our
        token and the sale's figures on its display (COMPLETED: nobody lifted a nozzle
        since), the totals' difference is exactly our sale: not a reconstruction."""
        sale = self.ledger.open_sale
        assert sale is not None
        nozzle, volume = max(moved.items(), key=lambda kv: kv[1])
        start_amount = sale.start_amount_totals.get(nozzle)
        amount = None if start_amount is None else amounts(totals)[nozzle] - start_amount
        head = status.last_sale
        queued = head is not None and head.auth_token != sale.token
        exact = (
            queued
            and status.fp_state is FPState.COMPLETED
            and status.cur_auth_token == sale.token
            and status.cur_amount_fen == amount
            and abs(status.cur_volume_ml - volume) <= 1
        )
        await self._record(
            "completed",
            {
                "sale_id": sale.sale_id,
                "pump_sale_seq": status.cur_sale_seq if exact else 0,
                "nozzle": nozzle,
                "volume_ml": volume,
                "amount_fen": amount,
                "unit_price": status.cur_unit_price if exact else None,
                "end_reason": None,
                "price_set_id": sale.price_set_id,
                "end_totals": as_payload(volumes(totals)),
                "reconstructed": not exact,
                "queued": queued,
            },
        )
        if exact:
            return
        await self._alert(
            AlertKind.SALE_RECONSTRUCTED,
            f"{sale.sale_id} finished from totals: {volume} mL on nozzle {nozzle}",
            sale=sale.sale_id,
        )

    async def _clear_pending(self) -> None:
        pending = self.ledger.pending_clear
        assert pending is not None
        await self._clear_head(pending.pump_sale_seq)
        await self._record(
            "cleared", {"sale_id": pending.sale_id, "pump_sale_seq": pending.pump_sale_seq}
        )
