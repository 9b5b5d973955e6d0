"""The operator's side of a PumpActor: prices, closing and opening, and the stop buttons.

Prices and the open/closed state are *intents* that outlive the call that asked for
them: each is journaled first (``prices_pending``, ``close_requested``, ``opened``) and
then carried out, at once if the point allows it, else by the poll loop as soon as it
does. A price change never lands in the middle of a sale (the pump would refuse it
anyway: a sale is priced with one price set from start to end), and CLOSE is sent only
once the switch has nothing left in the pump, so a closing point finishes, settles and
clears its sale first. A restarted actor finds the same intents in its journal and
carries on with them.

STOP, SUSPEND, RESUME and EMERGENCY_STOP are sent at once; refusals go back to the
caller. The sale they affect ends, if it does, through the usual path (the poll sees it
end and finishes it from the sale block), so a stopped sale settles exactly as any other.
"""

from __future__ import annotations

from typing import Final

from .driver import CommandRefused
from .gfd1.codec import StatusBlock
from .gfd1.states import CommandResult, ErrorCode, FPState
from .pump_base import PumpBase
from .pump_journal import Admin
from .pump_messages import (
    AlertKind,
    Close,
    EmergencyStop,
    Open,
    PriceChange,
    ResetError,
    Resume,
    SetPrices,
    Stop,
    Suspend,
)
from .recovery import LIVE

_U16: Final = 0xFFFF
_U32: Final = 0xFFFF_FFFF
MAX_NOZZLES: Final = 8
# Where CLOSE is accepted (elsewhere the pump answers ILLEGAL_STATE: a sale, or a fault).
_CLOSABLE: Final = frozenset({FPState.IDLE, FPState.CALLING, FPState.COMPLETED})


def check_prices(msg: SetPrices, nozzles: int) -> None:
    """ValueError for a price set no pump should be sent (checked before journaling)."""
    if not 1 <= msg.price_set_id <= _U16:
        raise ValueError(f"price set id must be 1..{_U16}, not {msg.price_set_id}")
    limit = nozzles or MAX_NOZZLES
    if not 1 <= len(msg.prices) <= limit:
        raise ValueError(f"{len(msg.prices)} prices for a point with {limit} nozzles")
    if not all(1 <= p <= _U32 for p in msg.prices):
        raise ValueError(f"prices must be positive integers (milli-fen/L): {msg.prices}")


class PumpAdmin(PumpBase):
    # -- prices ----------------------------------------------------------------------------

    async def _set_prices(self, msg: SetPrices) -> PriceChange:
        check_prices(msg, len(self.ledger.volume_totals))
        payload = {"price_set_id": msg.price_set_id, "prices": list(msg.prices)}
        await self._record("prices_pending", payload)
        applied = await self._apply_pending_prices(await self.driver.status())
        return PriceChange(msg.price_set_id, applied)

    async def _apply_pending_prices(self, status: StatusBlock) -> bool:
        """Apply the pending price set if the point allows it now; False: still pending."""
        pending = self.ledger.pending_prices
        if pending is None:
            return True
        if not self._at_rest() or status.fp_state in LIVE:
            return False  # after the sale; the poll loop tries again
        try:
            await self.driver.set_prices(pending.prices, pending.price_set_id)
        except CommandRefused as exc:
            if exc.result is CommandResult.BUSY:
                return False  # a sale began after all (stand-alone): later
            payload = {"price_set_id": pending.price_set_id, "result": exc.result.name}
            await self._record("prices_refused", payload)
            raise
        payload = {"price_set_id": pending.price_set_id, "prices": list(pending.prices)}
        await self._record("prices_applied", payload)
        return True

    # -- open and close ----------------------------------------------------------------------

    async def _close(self, msg: Close) -> Admin:
        if self.ledger.admin is Admin.OPEN:
            await self._record("close_requested", {})
            self._close_sent = False
        await self._drive_admin(await self.driver.status())
        return self.ledger.admin

    async def _open(self, msg: Open) -> Admin:
        if self.ledger.admin is not Admin.OPEN:
            await self._record("opened", {})
        self._close_sent = False
        await self.driver.open()  # also cancels a CLOSE the pump still holds
        return Admin.OPEN

    async def _drive_admin(self, status: StatusBlock) -> None:
        """Bring the pump to the journaled open/closed state (the poll loop calls this)."""
        admin = self.ledger.admin
        if admin is Admin.OPEN:
            if status.fp_state is FPState.CLOSED:
                await self.driver.open()  # our OPEN was lost: the journal says open
            return
        if status.fp_state is FPState.CLOSED:
            if admin is Admin.CLOSING:
                await self._record("closed", {})
            return
        if admin is Admin.CLOSED:  # closed by us, open now (a replaced pump?): again
            await self._record("close_requested", {})
            self._close_sent = False
        if not self._close_sent and self._at_rest() and status.fp_state in _CLOSABLE:
            await self.driver.close()  # the pump holds it until its buffer is collected
            self._close_sent = True
            if (await self.driver.status()).fp_state is FPState.CLOSED:
                await self._record("closed", {})

    # -- the stop buttons ------------------------------------------------------------------

    async def _stop(self, msg: Stop) -> None:
        if (sale := self.sale_id) is not None:
            await self._record("stop_requested", {"sale_id": sale})
        await self.driver.stop()
        self._poll_soon()

    async def _suspend(self, msg: Suspend) -> None:
        await self.driver.suspend()
        if (sale := self.sale_id) is not None:
            await self._record("suspended", {"sale_id": sale})

    async def _resume(self, msg: Resume) -> None:
        await self.driver.resume()
        if (sale := self.sale_id) is not None:
            await self._record("resumed", {"sale_id": sale})

    async def _emergency_stop(self, msg: EmergencyStop) -> None:
        await self._record("emergency_stop", {"sale_id": self.sale_id, "reason": msg.reason})
        await self.driver.emergency_stop()
        await self._alert(
            AlertKind.EMERGENCY_STOP,
            f"emergency stop: {msg.reason}",
            sale=self.sale_id,
            code=int(ErrorCode.EMERGENCY_STOP),
        )
        self._poll_soon()

    async def _reset_error(self, msg: ResetError) -> None:
        await self.driver.reset_error()
        self._poll_soon()  # the poll journals ``error_cleared`` when ERROR_CODE is 0

    # -- pump errors -------------------------------------------------------------------------

    async def _observe_error(self, status: StatusBlock) -> None:
        """Alert once per occurrence of ERROR_CODE != 0; journal when it clears."""
        code, known = int(status.error_code), self.ledger.pump_error
        if code == known:
            return
        if code == 0:
            await self._record("error_cleared", {"code": known})
            return
        await self._alert(
            AlertKind.PUMP_ERROR,
            f"ERROR_CODE {status.error_code.name} ({code}), point {status.fp_state.name}",
            sale=self.sale_id,
            code=code,
        )
