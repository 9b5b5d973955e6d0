"""What the switch knows of one DART pump: its transactions folded, sans-IO.

A DART pump reports changes when polled (DC1 on a status change, DC2 on every poll
while filling, DC3 when a nozzle moves, DC101 when totals were asked for); nothing here
asks for anything. The driver reads this state and maps it onto the GFD-1 vocabulary
(:func:`fp_state`), and it waits on ``generation`` numbers to know that something
arrived after a request it made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from ..gfd1.states import FPState
from .transactions import DC1, Alarm, Filling, NozzlePrice, Status, Totals, Transaction

_FP_STATES: Final = {
    DC1.NOT_PROGRAMMED: FPState.INOPERATIVE,
    DC1.AUTHORIZED: FPState.AUTHORIZED,
    DC1.FILLING: FPState.FUELLING,
    DC1.FILLING_COMPLETED: FPState.COMPLETED,
    DC1.PRESET_REACHED: FPState.COMPLETED,
    DC1.SWITCHED_OFF: FPState.CLOSED,
    DC1.SUSPENDED: FPState.SUSPENDED_FUELLING,
}
LIVE: Final = frozenset({DC1.AUTHORIZED, DC1.FILLING, DC1.SUSPENDED})
ENDED: Final = frozenset({DC1.FILLING_COMPLETED, DC1.PRESET_REACHED})


@dataclass(slots=True)
class TotalsRead:
    volume: int  # pump units
    amount: int | None
    generation: int  # when it arrived


@dataclass(slots=True)
class DartPumpState:
    status: DC1 | None = None
    status_generation: int = 0  # when the last DC1 arrived
    volume: int = 0  # of the filling in progress or last ended, pump units
    amount: int = 0
    filling_generation: int = 0
    price: int = 0  # of the selected nozzle, pump units
    nozzle: int = 0  # selected nozzle, 0 = none
    nozzle_out: bool = False
    alarm: int | None = None
    totals: dict[int, TotalsRead] = field(default_factory=dict)  # by nozzle
    generation: int = 0  # blocks applied
    ended_at: int | None = None  # generation of the change into status 5/6

    def apply(self, transactions: Sequence[Transaction]) -> None:
        self.generation += 1
        g = self.generation
        for t in transactions:
            match t:
                case Status(status):
                    if status in ENDED and self.status not in ENDED:
                        self.ended_at = g
                    if status not in ENDED:
                        self.ended_at = None
                    self.status, self.status_generation = status, g
                case Filling(volume, amount):
                    self.volume, self.amount, self.filling_generation = volume, amount, g
                case NozzlePrice(price, nozzle, out):
                    self.price, self.nozzle, self.nozzle_out = price, nozzle, out
                case Alarm(code):
                    self.alarm = code
                case Totals(counter, volume, amount, _):
                    if counter <= 0x09:  # a volume counter: the long form has the amount too
                        self.totals[counter] = TotalsRead(volume, amount, g)
                    else:
                        read = self.totals.get(counter - 0x10)
                        if read is not None:  # an amount counter, asked for on its own
                            read.amount = volume
                case _:
                    pass  # unknown transactions were skipped by length

    def forget(self) -> None:
        """The pump was offline: what it said before may be stale."""
        self.status = None
        self.ended_at = None


def fp_state(state: DartPumpState) -> FPState:
    status = state.status
    if status is None:
        return FPState.INOPERATIVE
    if status is DC1.RESET:
        return FPState.CALLING if state.nozzle_out else FPState.IDLE
    return _FP_STATES[status]
