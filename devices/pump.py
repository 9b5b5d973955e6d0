"""PumpActor: the one piece of code that commands a fuelling point.

Theory of operation
-------------------
Write-ahead, always (ARCHITECTURE.md invariant 1, the GFD-1 spec's rules): every intent
is journaled before the pump is told (a sale's start totals and token, a price change,
a close), and every outcome after the pump confirmed it. A crash anywhere leaves the
journal one step behind the pump at most, and ``init`` closes that gap with the restart
table (:mod:`devices.recovery`) before the actor is reported started: it never authorizes
twice, never loses litres, and alerts on every sale it did not expect. A pump that does
not answer at start does not stop the actor from starting: it reconciles on the first
poll that gets an answer, and refuses sales until then.

The actor polls (``active_poll_s`` while a sale is open or uncleared, ``idle_poll_s``
otherwise, ``quiet_poll_s`` once nothing changed for ``quiet_after_s``: an idle poll is
one status read), follows the sale, publishes changes to
subscribers' addresses, applies a pending price change or close once the point is free,
and answers calls one at a time, so a command never interleaves with a completion.
Refused calls fail the caller, never the actor.

The behaviour is split by concern: :mod:`devices.pump_base` (journal, subscribers,
alerts, timer), :mod:`devices.pump_admin` (prices, open/close, stop buttons, pump
errors), :mod:`devices.pump_lookup` (sale status, payable sales, pump info: no pump
I/O), :mod:`devices.pump_buffer` (the payable buffer: post-pay sales, orphans, locking
and collecting), :mod:`devices.pump_sales` (the sale, gaps); this module has the
lifecycle, the poll and the call table. Messages are in :mod:`devices.pump_messages`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import structlog
import trio

from actors import NOREPLY, CallTimeout, Reply, UnhandledMessage
from ops.metrics import METRICS
from switch.store.errors import ConflictError, StoreUnavailable

from .driver import DriverError
from .gfd1.codec import StatusBlock
from .gfd1.states import FPState
from .pump_journal import Admin, fold
from .pump_messages import (
    Authorize,
    Authorized,
    Close,
    CollectSale,
    EmergencyStop,
    LockSale,
    LookupFailed,
    Open,
    PayableSale,
    PayableSales,
    Poll,
    PumpBusy,
    PumpClosed,
    PumpEvent,
    PumpInfo,
    PumpInfoReply,
    ResetError,
    Resume,
    SaleFinished,
    SaleNotPayable,
    SalePhase,
    SaleReport,
    SaleStatus,
    SetPrices,
    Stop,
    Subscribe,
    Suspend,
    UnlockSale,
    Unsubscribe,
)
from .pump_sales import PumpSales, contact

__all__ = [
    "Authorize",
    "Authorized",
    "Close",
    "CollectSale",
    "EmergencyStop",
    "LockSale",
    "LookupFailed",
    "Open",
    "PayableSale",
    "PayableSales",
    "PumpActor",
    "PumpBusy",
    "PumpClosed",
    "PumpEvent",
    "PumpInfo",
    "PumpInfoReply",
    "ResetError",
    "Resume",
    "SaleFinished",
    "SaleNotPayable",
    "SalePhase",
    "SaleReport",
    "SaleStatus",
    "SetPrices",
    "Stop",
    "Subscribe",
    "Suspend",
    "UnlockSale",
    "Unsubscribe",
]

log = structlog.get_logger("devices")

# What a refused call raises into its caller (the actor carries on): the pump's refusals
# and silences, the actor's own "not now", arguments no pump should be sent, and a
# lookup the journal could not answer.
REFUSALS: Final = (DriverError, PumpBusy, ValueError, LookupFailed)
# A journal that did not answer (in time): the outcome of the write is unknown.
JOURNAL_FAILURES: Final = (CallTimeout, StoreUnavailable, ConflictError)


class PumpActor(PumpSales):
    _journal_stale = True  # the ledger must be (re)read from the journal before recovering

    # -- start: recovery before anything else ------------------------------------------------

    async def init(self) -> None:
        self._bind_log_context()
        self._journal_stale = True
        await self._recover_or_defer()
        if self.recovered is None:
            self._poll_soon()  # deferred: the first poll tries the recovery again
        else:
            if self.status is not None and self.status.fp_state is not FPState.IDLE:
                self._changed_at = trio.current_time()  # not at rest: no quiet yet
            # The status was just read: the first poll comes on the station's beat, not at
            # once (5,000 pumps starting would otherwise poll twice in the same second, and
            # the second round competes with the stations still starting).
            self._next_poll()

    async def _recover_or_defer(self) -> None:
        """Recover now, or leave it to the next poll: a pump that does not answer, and a
        journal that does not (a starved or busy database at start), defer the recovery
        instead of failing the actor, and with it its station and the switch's start.
        Sales are refused until it ran (``recovered`` is None). A journal write whose
        outcome is unknown may still commit: the journal is read again before the retry,
        so nothing is sent to the pump on a ledger the journal has moved past."""
        try:
            await self._recover()
        except DriverError as exc:
            log.warning("pump.recovery_deferred", pump=str(self.address), error=str(exc))
            await self._unreachable(exc)
        except JOURNAL_FAILURES as exc:
            self._journal_stale = True
            log.warning(
                "pump.recovery_deferred", pump=str(self.address), error=str(exc), cause="journal"
            )

    async def _recover(self) -> None:
        if self._journal_stale:
            self.ledger = fold(await self.journal.load(self.stream_id))
            self.driver.restore(self.ledger.driver_memory())
            self._journal_stale = False
        if self.ledger.pending_clear is not None:
            # ``completed`` is journaled: finish the clear first, so that the sale still at
            # the head of the pump's buffer is not taken for a stranger's.
            await self._clear_pending()
        if self.ledger.book.collecting is not None:  # a post-pay sale paid, not yet cleared
            await self._collect_pending()
        status = await self.driver.status()
        self.status = status
        if self.ledger.boot_count is None:  # first contact: what the pump says is the base
            await self._record("contact", contact(status, await self.driver.totals()))
            if status.fp_state is FPState.CLOSED and self.ledger.admin is Admin.OPEN:
                await self._record("closed", {})  # found closed: not ours to open
        self.recovered = await self._check_boot(status) or await self._reconcile(status)

    # -- polling -------------------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if not isinstance(msg, Poll):
            await super().handle_info(msg)
            return
        self.polls += 1
        started = time.perf_counter()
        try:
            status = await self.driver.status()
        except DriverError as exc:
            METRICS.count_pump_poll_error(self.protocol)
            self.poll_latency.failed()
            await self._unreachable(exc)
        else:
            elapsed = time.perf_counter() - started
            METRICS.observe_pump_poll(self.protocol, elapsed)
            self.poll_latency.observe(elapsed)
            self._reachable()
            try:
                await self._poll(status)
            except DriverError as exc:  # reachable, but a step failed: the next poll retries
                self.last_error = str(exc)
                log.info("pump.poll_step_failed", pump=str(self.address), error=str(exc))
        self._next_poll()

    async def _poll(self, status: StatusBlock) -> None:
        previous, self.status = self.status, status
        self._noticed(previous, status)
        if previous is None or previous.fp_state is not status.fp_state:
            self._publish("state", {"state": status.fp_state.name})
            if status.fp_state is FPState.CALLING:
                self._publish("calling", {"nozzle": status.active_nozzle})
        if self.recovered is None:
            await self._recover_or_defer()
            return
        # A step that changed the pump ends the poll, and the next one comes at once: what
        # follows must not act on a status read before that change (a sale just cleared
        # still heads the buffer in it, and would be taken for a stranger's).
        if await self._check_boot(status) is not None:
            self._poll_again = True
            return
        await self._observe_error(status)
        if self.ledger.pending_clear is not None:
            await self._clear_pending()
            self._poll_again = True
            return
        if self.ledger.book.collecting is not None:
            await self._collect_pending()
            self._poll_again = True
            return
        # Payable sales cleared at the console are noticed during a sale of ours too.
        await self._forget_gone(status)
        if self.ledger.open_sale is not None:
            await self._follow_sale(status)
            self._poll_again = self.ledger.open_sale is None
            return  # prices and a close wait for the sale anyway
        head = status.last_sale
        if head is not None and await self._buffer_head(head, status):
            self._poll_again = True
            return
        if self.ledger.pending_prices is not None:
            await self._apply_pending_prices(status)
        await self._drive_admin(status)

    # -- calls ---------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        handler = _CALLS.get(type(msg))
        if handler is None:
            raise UnhandledMessage("call", msg)
        try:
            return await handler(self, msg)
        except REFUSALS as exc:
            reply.fail(exc)
            return NOREPLY

    async def _subscribe(self, msg: Subscribe) -> dict[str, Any]:
        self.subscribers.add(msg.address)
        return self.snapshot()

    async def _unsubscribe(self, msg: Unsubscribe) -> None:
        self.subscribers.discard(msg.address)

    def snapshot(self) -> dict[str, Any]:
        status, ledger = self.status, self.ledger
        pending = ledger.pending_prices
        return {
            "state": "OFFLINE" if self.offline else status.fp_state.name if status else None,
            "open_sale": self.sale_id,
            "open_sale_state": ledger.open_sale_state,
            "pending_clear": ledger.pending_clear.sale_id if ledger.pending_clear else None,
            "payable": [p.pump_sale_seq for p in ledger.book.payables],
            "collecting": ledger.book.collecting.pump_sale_seq if ledger.book.collecting else None,
            "boot_count": status.boot_count if status else None,
            "error_code": int(status.error_code) if status else None,
            "admin": ledger.admin.value,
            "price_set_id": status.price_set_id if status else ledger.price_set_id,
            "pending_prices": pending.price_set_id if pending else None,
            "sales": ledger.sales,
            "alerts": [dict(a) for a in ledger.recent_alerts],
            "alert_count": ledger.alerts,
            "polls": self.polls,
            "poll_latency": self.poll_latency.snapshot(),
            "last_error": self.last_error,
            "recovered": self.recovered,
            "subscribers": len(self.subscribers),
            "dropped_events": self.dropped_events,
            "driver": self.driver.statistics(),
        }


# Message type -> handler. A handler's return value is the reply.
_CALLS: Final[dict[type, Callable[[PumpActor, Any], Awaitable[Any]]]] = {
    Authorize: PumpActor._authorize,
    Stop: PumpActor._stop,
    Suspend: PumpActor._suspend,
    Resume: PumpActor._resume,
    EmergencyStop: PumpActor._emergency_stop,
    ResetError: PumpActor._reset_error,
    SetPrices: PumpActor._set_prices,
    Close: PumpActor._close,
    Open: PumpActor._open,
    Subscribe: PumpActor._subscribe,
    Unsubscribe: PumpActor._unsubscribe,
    SaleStatus: PumpActor._sale_status,
    PayableSales: PumpActor._payable_sales,
    LockSale: PumpActor._lock_sale,
    UnlockSale: PumpActor._unlock_sale,
    CollectSale: PumpActor._collect_sale,
    PumpInfo: PumpActor._pump_info,
}
