"""The mechanics of a simulated fuelling point: its memory and the transitions on it.

:class:`PointMechanics` holds the non-volatile and RAM state of one point and the steps
that change it (nozzles out and back, a sale beginning, flowing, ending into the payable
buffer, a failure, a power cycle, a pending CLOSE). It never looks at the clock to decide
anything: :class:`~devices.sim.fuelling_point.PointCore` extends it with the public API and
the events that call these steps when they are due. Split out of
:mod:`devices.sim.fuelling_point` to keep each module to one concern.
"""

from __future__ import annotations

import random
from collections import deque

from devices.gfd1.states import (
    CommandResult,
    EndReason,
    ErrorCode,
    FPState,
    Mode,
    PresetType,
    SaleState,
)

from .faults import Faults
from .physics import FlowCurve, amount_fen, volume_for_amount
from .point_sale import AT_REST, LiveSale, PresentCustomer, lowest_nozzle
from .records import U32, Customer, PointSpec, Sale, SimSettings, to_ms


class PointMechanics:
    """The state of one fuelling point and the transitions on it (nozzles, sales, power);
    :class:`~devices.sim.fuelling_point.PointCore` adds time, events and the public API."""

    def __init__(
        self,
        spec: PointSpec,
        rng: random.Random,
        *,
        now_s: float = 0.0,
        settings: SimSettings | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings if settings is not None else SimSettings()
        self.faults = faults if faults is not None else Faults()
        self._rng = rng
        count = spec.nozzle_count
        self._all_mask = (1 << count) - 1
        # non-volatile
        self._boot_count = 1
        self._sale_seq = 0
        self._volume_totals = [0] * count
        self._amount_totals = [0] * count
        self._applied = [n.price for n in spec.nozzles]
        self._staged = list(self._applied)
        self._price_set_id = spec.price_set_id
        self._buffer: list[Sale] = []
        self._closed = False
        self._close_pending = False
        # the physical world
        self._t = to_ms(now_s)
        self._nozzles_out = 0
        self._queue: deque[Customer] = deque()
        self._customer: PresentCustomer | None = None
        self._ended: list[Sale] = []
        # RAM, set by _power_up
        self._state = FPState.IDLE
        self._error = ErrorCode.NONE
        self._sale: LiveSale | None = None
        self._flow_due: int | None = None
        self._boot_ms = self._t
        self._last_host_ms = self._t
        self._watchdog_armed = True
        self._ack_seq = 0
        self._ack_result = CommandResult.OK
        self._ack_code = 0
        self._cur_volume = 0
        self._cur_amount = 0
        self._cur_price = 0
        self._cur_token = 0
        self._power_up()

    # -- internals: nozzles and sales --------------------------------------------------------

    def _bit(self, nozzle: int) -> int:
        if not 1 <= nozzle <= self.spec.nozzle_count:
            raise ValueError(f"no nozzle {nozzle} on a {self.spec.nozzle_count}-nozzle point")
        return 1 << (nozzle - 1)

    def _idle_state(self) -> FPState:
        return FPState.CALLING if self._nozzles_out else FPState.IDLE

    def _rest_state(self) -> FPState:
        if self._closed:
            return FPState.CLOSED
        return FPState.COMPLETED if self._buffer else self._idle_state()

    def _buffer_full(self) -> bool:
        return 0 < self.settings.max_unpaid <= len(self._buffer)

    def _lift(self, bit: int) -> None:
        if self._nozzles_out & bit:
            return
        self._nozzles_out |= bit
        state = self._state
        if state in (FPState.IDLE, FPState.COMPLETED, FPState.CALLING):
            if state is not FPState.CALLING:
                self._state = FPState.CALLING
                self._cur_price = self._applied[lowest_nozzle(bit) - 1]
            if self.settings.mode is Mode.STAND_ALONE and self._flow_due is None:
                self._flow_due = self._t + self.spec.flow_delay_ms
        elif state is FPState.AUTHORIZED:
            self._pick_nozzle()

    def _release(self, mask: int) -> None:
        mask &= self._nozzles_out
        if not mask:
            return
        self._nozzles_out &= ~mask
        if self._state is FPState.CALLING and not self._nozzles_out:
            self._state = FPState.IDLE
            self._flow_due = None
        elif self._state is FPState.AUTHORIZED:
            self._pick_nozzle()
        # FUELLING / SUSPENDED_FUELLING: the hang-up is seen by _fire_one (level-triggered)

    def _pick_nozzle(self) -> None:
        """Before first flow, the sale's nozzle is the lowest authorized nozzle that is out;
        the customer squeezes ``flow_delay_ms`` after it is both out and authorized."""
        sale = self._sale
        if sale is None or sale.flowed:
            return
        nozzle = lowest_nozzle(self._nozzles_out & sale.nozzle_mask)
        if nozzle != sale.nozzle:
            sale.nozzle = nozzle
            self._flow_due = self._t + self.spec.flow_delay_ms if nozzle else None
            if nozzle:
                self._cur_price = self._applied[nozzle - 1]

    def _begin_sale(self, token: int, mask: int, preset: PresetType, value: int) -> None:
        """An accepted authorization: a sale starts, CUR_SALE_SEQ + 1."""
        self._sale_seq = self._sale_seq % U32 + 1
        self._sale = LiveSale(self._sale_seq, token, mask, preset, value, self._t)
        self._state = FPState.AUTHORIZED
        self._cur_volume = self._cur_amount = 0
        self._cur_token = token
        self._pick_nozzle()

    def _start_flow(self) -> None:
        sale = self._sale
        assert sale is not None and sale.nozzle
        i = sale.nozzle - 1
        sale.flowed = True
        sale.unit_price = self._applied[i]
        sale.price_set_id = self._price_set_id
        sale.start_volume_total_ml = self._volume_totals[i]
        sale.start_amount_total_fen = self._amount_totals[i]
        rate = self._rng.randint(self.spec.flow_min_ml_s, self.spec.flow_max_ml_s)
        sale.curve = FlowCurve(rate, self.spec.ramp_ms)
        sale.segment_start_ms, sale.segment_base_ml = self._t, 0
        if sale.preset_type is PresetType.VOLUME:
            sale.preset_limit_ml = sale.preset_value
        elif sale.preset_type is PresetType.AMOUNT:
            sale.preset_limit_ml = volume_for_amount(sale.preset_value, sale.unit_price)
        self._cur_price = sale.unit_price
        self._state = FPState.FUELLING
        self._flow_due = None

    def _volume_limit(self, sale: LiveSale) -> int | None:
        """The smallest sale volume at which something must happen (preset, customer,
        one-shot fault): flow is cut exactly there, and the event handled."""
        faults = self.faults
        limits = [sale.preset_limit_ml, faults.pulser_error_at_ml, faults.power_loss_at_ml]
        customer = self._customer
        if customer is not None and customer.nozzle == sale.nozzle:
            limits.append(customer.hang_up_ml)
        present = [v for v in limits if v is not None]
        return min(present) if present else None

    def _flow_to(self, t: int) -> None:
        """Dispense up to time ``t``; totals move with the live sale, mL by mL."""
        sale = self._sale
        if self._state is not FPState.FUELLING or sale is None or sale.curve is None:
            return
        volume = sale.segment_base_ml + sale.curve.volume_ml(t - sale.segment_start_ms)
        limit = self._volume_limit(sale)
        if limit is not None:
            volume = min(volume, limit)
        if volume <= sale.volume_ml:
            return
        amount = amount_fen(volume, sale.unit_price)
        i = sale.nozzle - 1
        self._volume_totals[i] += volume - sale.volume_ml
        self._amount_totals[i] += amount - sale.amount_fen
        sale.volume_ml, sale.amount_fen = volume, amount
        self._cur_volume, self._cur_amount = volume, amount

    def _record(self, sale: LiveSale, reason: EndReason, state: SaleState) -> Sale:
        nozzle = sale.nozzle or lowest_nozzle(sale.nozzle_mask)
        i = nozzle - 1
        end_volume, end_amount = self._volume_totals[i], self._amount_totals[i]
        if sale.flowed:
            start_volume, start_amount = sale.start_volume_total_ml, sale.start_amount_total_fen
            price, price_set = sale.unit_price, sale.price_set_id
        else:  # a zero sale: no flow, totals unchanged
            start_volume, start_amount = end_volume, end_amount
            price, price_set = self._applied[i], self._price_set_id
        return Sale(
            seq=sale.seq,
            nozzle=nozzle,
            end_reason=reason,
            volume_ml=sale.volume_ml,
            amount_fen=sale.amount_fen,
            unit_price=price,
            start_volume_total_ml=start_volume,
            end_volume_total_ml=end_volume,
            start_amount_total_fen=start_amount,
            end_amount_total_fen=end_amount,
            auth_token=sale.token,
            preset_type=sale.preset_type,
            preset_value=sale.preset_value,
            price_set_id=price_set,
            state=state,
        )

    def _end_sale(self, reason: EndReason) -> Sale:
        """The sale ends into the payable buffer: COMPLETED if it flowed, else (a zero
        sale) back to IDLE/CALLING. A scripted customer then hangs up and leaves."""
        sale = self._sale
        assert sale is not None
        record = self._record(sale, reason, SaleState.PAYABLE)
        self._buffer.append(record)
        self._ended.append(record)
        self._sale = None
        self._flow_due = None
        self._state = FPState.COMPLETED if sale.flowed else self._idle_state()
        self._customer_leaves()
        return record

    def _fail(self, code: ErrorCode, reason: EndReason) -> None:
        if self._sale is not None:
            self._end_sale(reason)
        self._state = FPState.INOPERATIVE
        self._error = code
        self._flow_due = None

    def _customer_leaves(self) -> None:
        customer, self._customer = self._customer, None
        if customer is not None:
            self._release(self._bit(customer.nozzle))

    def _power_cycle(self, lose_in_progress: bool) -> Sale | None:
        sale, record = self._sale, None
        if sale is not None and lose_in_progress:
            record = self._record(sale, EndReason.POWER_LOSS, SaleState.NONE)
            self._ended.append(record)
            self._sale = None
            self._customer_leaves()
        elif sale is not None:
            record = self._end_sale(EndReason.POWER_LOSS)
        self._boot_count = self._boot_count % U32 + 1
        self._power_up()
        return record

    def _power_up(self) -> None:
        """RAM comes back empty; the state follows from what is non-volatile."""
        self._boot_ms = self._t
        self._sale = None
        self._flow_due = None
        self._error = ErrorCode.NONE
        self._ack_seq, self._ack_result, self._ack_code = 0, CommandResult.OK, 0
        self._last_host_ms, self._watchdog_armed = self._t, True
        self._cur_volume = self._cur_amount = self._cur_price = self._cur_token = 0
        self._state = self._rest_state()

    def _maybe_close(self) -> None:
        """A pending CLOSE takes effect once the buffer is collected and the point rests."""
        if self._close_pending and not self._buffer and self._state in AT_REST:
            self._close_pending = False
            self._closed = True
            self._state = FPState.CLOSED
