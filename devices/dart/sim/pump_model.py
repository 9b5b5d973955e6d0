"""A simulated fuelling point as a DART pump's application layer, sans-IO.

:class:`DartPumpModel` sits on one :class:`~devices.sim.dispenser.FuellingPoint` and
speaks DART transactions to it: it derives the DART status from the point's state,
executes the controller's CD transactions through the point's own command interface
(so the physics, the payable buffer, the totals, the faults and the ledger are the
GFD-1 simulator's, unchanged), and decides what the pump has to tell when it is polled.
The link layer (block numbers, acknowledgements, repeats) is
:class:`~devices.dart.sim.pump_side.DartPumpSide`'s.

Status. ``status()`` maps the point onto DC1, first match wins:

* not programmed since the last power-up -> 0;
* AUTHORIZED / STARTED -> 2, FUELLING -> 4, SUSPENDED_* -> 8 (a sale in progress);
* a sale in the payable buffer -> 6 if it ended on its preset, else 5 (hang-up, STOP,
  error, power loss, or a zero sale after STOP or the authorization timeout). The point
  is built with a buffer of one sale, so a DART pump keeps 5/6 until CD1 RESET clears it
  and refuses AUTHORIZE meanwhile, as a DART pump does;
* CLOSED -> 7;
* INOPERATIVE (pulser error, emergency stop) -> 0, because the switch maps 0 to
  INOPERATIVE; a CD1 RESET clears the error (it is also how a controller programs a pump
  in status 0, so one recovery path covers both). 7 would read as a pump the controller
  closed, which nobody would reopen. The switch's driver takes a programmed pump going
  to 0 for a power-up, so an error costs a boot count there: harmless, and the restart
  path (totals read again) is the right one after a pulser error anyway;
* otherwise (IDLE, CALLING, COMPLETED with an empty buffer) -> 1; a nozzle out shows in
  DC3's NOZIO bit 4, not in DC1.

Power. A DART pump forgets its programming with its RAM: when the point's BOOT_COUNT
changes (a power cycle) the pump is in status 0 until it has received CD5 prices and a
CD1 RESET, and it refuses AUTHORIZE until then. A pump of a freshly created simulator
starts programmed (status 1), so a test or a load test need not program every pump
before the first sale; a pump restored from the state file came through a power-up and
starts in status 0.

Units. The pump's units follow its :class:`~devices.dart.transactions.Decimals`.
Incoming values convert exactly (CD3/CD4/CD5). Outgoing volumes and amounts are
truncated to the pump's units (what its display shows) and wrap at the width of their
BCD field like a mechanical counter, so no physics value can make a report unencodable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from devices.gfd1.codec import StatusBlock
from devices.gfd1.states import Command as Gfd1Command
from devices.gfd1.states import CommandResult, EndReason, FPState, PresetType
from devices.sim.dispenser import FuellingPoint
from devices.sim.records import U32

from ..transactions import (
    CD1,
    DC1,
    AllowedNozzles,
    Command,
    Decimals,
    Filling,
    NozzlePrice,
    PresetAmount,
    PresetVolume,
    Prices,
    Status,
    Totals,
    TotalsRequest,
    Transaction,
)

DEFAULT_DECIMALS: Final = Decimals(volume=3, amount=2, price=2)  # mL, fen, fen per litre
AUTH_TOKEN: Final = 1  # DART carries no token; every DART sale is authorized under this one
ENDED: Final = frozenset({DC1.FILLING_COMPLETED, DC1.PRESET_REACHED})
_PRICE_STATES: Final = frozenset({DC1.NOT_PROGRAMMED, DC1.RESET})
_DC2_MAX: Final = 10**8  # 4 BCD bytes
_TOTAL_MAX: Final = 10**10  # 5 BCD bytes
_PRICE_MAX: Final = 10**6  # 3 BCD bytes


class DartPumpModel:
    """One fuelling point as a DART pump; see the module docstring."""

    def __init__(
        self, point: FuellingPoint, decimals: Decimals = DEFAULT_DECIMALS, *, programmed: bool
    ) -> None:
        self.point = point
        self.decimals = decimals
        point.configure(max_unpaid=1)  # DART keeps one ended sale, in status 5/6
        self._boot = point.boot_count
        self.programmed = programmed
        self.prices_received = False  # CD5 applied since the last power-up
        self.refused = 0  # commands the point did not carry out
        # CD2/CD3/CD4 wait here for the next AUTHORIZE, which consumes them.
        self._allowed: tuple[int, ...] = ()
        self._preset: tuple[PresetType, int] = (PresetType.NONE, 0)
        # What the pump must tell on the next poll beyond what changed.
        self._want_status = self._want_filling = False
        self._want_totals: list[int] = []
        # What it last told: baselines for "changed since last reported". A fresh pump
        # counts as having reported its state, so a poll before anything happens is EOT.
        self._reported_status = self.status()
        self._reported_nozzle = self.nozzle_price(point.status())

    # -- power ------------------------------------------------------------------------------

    def check_power(self) -> bool:
        """True (once) if the point was power cycled since the last look: the pump's
        RAM is gone, its programming included, and it announces itself on the next poll."""
        if self.point.boot_count == self._boot:
            return False
        self._boot = self.point.boot_count
        self.programmed = self.prices_received = False
        self._allowed, self._preset = (), (PresetType.NONE, 0)
        self._want_filling, self._want_totals = False, []
        self._want_status = True
        return True

    # -- the point as DART sees it ------------------------------------------------------

    def status(self) -> DC1:
        if not self.programmed:
            return DC1.NOT_PROGRAMMED
        state = self.point.state
        if state in (FPState.AUTHORIZED, FPState.STARTED):
            return DC1.AUTHORIZED
        if state is FPState.FUELLING:
            return DC1.FILLING
        if state in (FPState.SUSPENDED_STARTED, FPState.SUSPENDED_FUELLING):
            return DC1.SUSPENDED
        buffer = self.point.buffer
        if buffer:
            preset = buffer[0].end_reason is EndReason.PRESET_REACHED
            return DC1.PRESET_REACHED if preset else DC1.FILLING_COMPLETED
        if state is FPState.CLOSED:
            return DC1.SWITCHED_OFF
        if state is FPState.INOPERATIVE:
            return DC1.NOT_PROGRAMMED
        return DC1.RESET

    def nozzle_price(self, block: StatusBlock) -> NozzlePrice:
        """DC3: the ended sale's nozzle while one is buffered, else the sale's or the
        lifted nozzle (0 if none), its price, and whether any nozzle is out."""
        buffer, out = self.point.buffer, bool(block.nozzle_out_mask)
        if buffer:
            nozzle, price = buffer[0].nozzle, buffer[0].unit_price
        else:
            nozzle = block.active_nozzle
            price = self.point.applied_prices[nozzle - 1] if nozzle else 0
        return NozzlePrice(self._price_units(price), nozzle, out)

    def filling(self, block: StatusBlock) -> Filling:
        """DC2: the buffered sale's figures, else the live (or last) display figures."""
        buffer = self.point.buffer
        if buffer:
            volume, amount = buffer[0].volume_ml, buffer[0].amount_fen
        else:
            volume, amount = block.cur_volume_ml, block.cur_amount_fen
        return Filling(self._volume_units(volume) % _DC2_MAX, self._amount_units(amount) % _DC2_MAX)

    def totals(self, counter: int) -> Totals:
        """DC101 for one counter: 0x01-0x09 the long form (volume, amount, second total
        0), 0x11-0x19 the short form carrying the amount total. A nozzle the point lacks
        reads 0."""
        nozzle = counter & 0x0F
        volumes, amounts = self.point.volume_totals, self.point.amount_totals
        volume = volumes[nozzle - 1] if nozzle <= len(volumes) else 0
        amount = amounts[nozzle - 1] if nozzle <= len(amounts) else 0
        volume_units = self._volume_units(volume) % _TOTAL_MAX
        amount_units = self._amount_units(amount) % _TOTAL_MAX
        if counter >= 0x11:
            return Totals(counter, amount_units)
        return Totals(counter, volume_units, amount_units, 0)

    # -- a poll ---------------------------------------------------------------------------

    def report(self) -> list[Transaction]:
        """What to send on this poll, in order DC1, DC3, DC2, DC101...; empty if nothing.
        Building it counts as reporting it (the link layer resends it until acknowledged)."""
        block = self.point.status()
        status, nozzle = self.status(), self.nozzle_price(block)
        changed = status is not self._reported_status
        out: list[Transaction] = []
        if changed or self._want_status:
            out.append(Status(status))
        if changed or self._want_status or self._want_filling or nozzle != self._reported_nozzle:
            out.append(nozzle)
        if status is DC1.FILLING or (changed and status in ENDED) or self._want_filling:
            out.append(self.filling(block))
        out.extend(self.totals(counter) for counter in self._want_totals)
        self._reported_status, self._reported_nozzle = status, nozzle
        self._want_status = self._want_filling = False
        self._want_totals = []
        return out

    # -- a controller's block ----------------------------------------------------------------

    def execute(self, transactions: Sequence[Transaction]) -> None:
        """Carry out one block's transactions in order. A command the pump cannot carry
        out in its state is ignored (the controller sees the status it did not change);
        transactions this subset does not know are skipped."""
        for t in transactions:
            match t:
                case Command(code):
                    self._command(code)
                case AllowedNozzles(nozzles):
                    self._allowed = nozzles
                case PresetVolume(value):
                    self._preset = (PresetType.VOLUME, self.decimals.to_ml(value))
                case PresetAmount(value):
                    self._preset = (PresetType.AMOUNT, self.decimals.to_fen(value))
                case Prices(prices):
                    self._prices(prices)
                case TotalsRequest(counter):
                    if counter not in self._want_totals:
                        self._want_totals.append(counter)
                case _:
                    pass  # Unknown ones, skipped by length; DC transactions never come here

    def _command(self, code: CD1) -> None:
        if code is CD1.RETURN_STATUS:
            self._want_status = True
        elif code is CD1.RETURN_FILLING_INFO:
            self._want_filling = True
        elif code is CD1.RESET:
            self._reset()
        elif code is CD1.AUTHORIZE:
            self._authorize()
        elif code is CD1.STOP:
            self._do(Gfd1Command.STOP)
        elif code is CD1.SWITCH_OFF:
            self._do(Gfd1Command.CLOSE)
        elif code is CD1.SUSPEND:
            self._do(Gfd1Command.SUSPEND)
        elif code is CD1.RESUME:
            self._do(Gfd1Command.RESUME)

    def _reset(self) -> None:
        """RESET programs a pump in status 0 that has its prices (and clears an error),
        clears the ended sale in 5/6, opens a pump in 7; elsewhere it does nothing."""
        status = self.status()
        if status is DC1.NOT_PROGRAMMED:
            if self.point.state is FPState.INOPERATIVE:
                self._do(Gfd1Command.RESET_ERROR)
            if not self.programmed and self.prices_received:
                self.programmed = True
        elif status in ENDED:
            self._do(Gfd1Command.CLEAR_SALE, sale_seq=self.point.buffer[0].seq)
        elif status is DC1.SWITCHED_OFF:
            self._do(Gfd1Command.OPEN)

    def _authorize(self) -> None:
        (preset_type, preset_value), nozzles = self._preset, self._allowed
        self._allowed, self._preset = (), (PresetType.NONE, 0)  # consumed either way
        if self.status() is DC1.NOT_PROGRAMMED:
            self.refused += 1
            return
        if preset_value == 0:  # a zero preset is no preset
            preset_type = PresetType.NONE
        mask = sum(1 << (n - 1) for n in set(nozzles))
        self._do(
            Gfd1Command.AUTHORIZE,
            nozzle_mask=mask,
            preset_type=preset_type,
            preset_value=preset_value,
            token=AUTH_TOKEN,
        )

    def _prices(self, prices: tuple[int, ...]) -> None:
        """CD5 takes effect only in status 0/1 (no sale to reprice), all or nothing."""
        if self.status() not in _PRICE_STATES:
            self.refused += 1
            return
        given = prices[: self.point.spec.nozzle_count]
        converted = [self.decimals.to_price(p) for p in given]
        if any(not 1 <= p <= U32 for p in converted):
            self.refused += 1
            return
        for nozzle, price in enumerate(converted, 1):
            self.point.stage_price(nozzle, price)
        if self._do(Gfd1Command.APPLY_PRICES, nozzle_mask=(1 << len(converted)) - 1):
            self.prices_received = True

    def _do(self, code: Gfd1Command, **args: int) -> bool:
        """One command through the point's command block, under a CMD_SEQ that always
        differs from the last one (so it executes). False if the point refused it."""
        seq = self.point.status().cmd_ack_seq % 0xFFFF + 1
        try:
            result = self.point.command(seq, code, **args)
        except ValueError:  # an argument out of the point's range (a huge preset)
            result = CommandResult.BAD_ARG
        if result is not CommandResult.OK:
            self.refused += 1
            return False
        return True

    # -- units --------------------------------------------------------------------------------

    def _volume_units(self, ml: int) -> int:
        return ml // self.decimals.to_ml(1)

    def _amount_units(self, fen: int) -> int:
        return fen // self.decimals.to_fen(1)

    def _price_units(self, milli_fen_per_l: int) -> int:
        return milli_fen_per_l // self.decimals.to_price(1) % _PRICE_MAX
