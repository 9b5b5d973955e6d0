"""The physical side of a simulated fuelling point: time, flow, sales, customers, faults.

:class:`PointCore` owns everything except the host's command block (that is
:class:`~devices.sim.dispenser.FuellingPoint`, which extends it). It is sans-IO and
deterministic: model time moves only through :meth:`PointCore.advance`, randomness comes
only from the injected ``random.Random`` (one draw per sale: its flow rate).

Time is integer milliseconds. ``advance`` jumps from event to event (flow due, a volume
limit reached, a timeout, a scripted customer's move), so a long quiet stretch or a long
fill costs a handful of steps, and every stop lands on its exact volume.

Sales. An accepted AUTHORIZE starts a sale (CUR_SALE_SEQ + 1, CUR_AUTH_TOKEN, live
figures back to 0); in stand-alone mode the pump authorizes itself when the customer
squeezes (token 0, no preset). Flow starts ``flow_delay_ms`` after an authorized nozzle
is out; the sale's nozzle, unit price, price set and start totals are fixed then. Every
started sale ends as exactly one :class:`~devices.sim.records.Sale` in the payable
buffer: with flow the point goes COMPLETED (and stays so until CLEAR_SALE empties the
buffer, a nozzle is lifted, or another AUTHORIZE); without flow (auth timeout, STOP,
CANCEL_AUTH, host watchdog) it is a zero sale and the point goes back to IDLE/CALLING.
The only exception is a power cycle that loses the sale. STARTED and SUSPENDED_STARTED
are never entered: a lifted, authorized nozzle stays AUTHORIZED until flow.

Totals move with the flow, so at any moment a nozzle's totals are its last sale's end
totals plus the live sale; end totals of sale n are the start totals of sale n + 1.

Timeouts. AUTH_TIMEOUT_S counts from the authorization; at it an AUTHORIZED point ends a
zero sale (end reason 6). HOST_WATCHDOG_S (host-controlled mode only) counts from the
last :meth:`PointCore.host_activity`: when it runs out ERROR_CODE becomes 5 (latched
until RESET_ERROR; the point is not INOPERATIVE), an AUTHORIZED point ends a zero sale
(end reason 4), and a fuelling sale is left to finish normally.

Memory model. The totals, the payable buffer, the sale and boot counters, prices,
settings and the open/closed flag are non-volatile; they survive :meth:`power_cycle` and
are what ``to_dict`` saves. The sale in progress, the error code, the command
acknowledgement, the heartbeat and the live display figures are RAM. A point powers up
CLOSED if it was closed, else COMPLETED if its buffer holds sales, else IDLE/CALLING.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

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
from .records import U16, U32, Customer, PointSpec, Sale, SimSettings, to_ms

IN_SALE = frozenset({FPState.AUTHORIZED, FPState.FUELLING, FPState.SUSPENDED_FUELLING})
AT_REST = frozenset({FPState.IDLE, FPState.CALLING, FPState.COMPLETED})
_FLOWED = frozenset({FPState.FUELLING, FPState.SUSPENDED_FUELLING})
_NEVER = 1 << 62


@dataclass(slots=True)
class _Sale:
    """The sale in progress, from the authorization to its end (RAM)."""

    seq: int
    token: int
    nozzle_mask: int  # the nozzles the authorization allows
    preset_type: PresetType
    preset_value: int
    authorized_ms: int
    nozzle: int = 0  # the authorized nozzle that is out; fixed at first flow
    flowed: bool = False
    unit_price: int = 0
    price_set_id: int = 0
    start_volume_total_ml: int = 0
    start_amount_total_fen: int = 0
    volume_ml: int = 0
    amount_fen: int = 0
    preset_limit_ml: int | None = None
    curve: FlowCurve | None = None
    segment_start_ms: int = 0  # the current flow segment (first flow, or the last RESUME)
    segment_base_ml: int = 0


@dataclass(slots=True)
class _Present:
    """The scripted customer now holding a nozzle."""

    nozzle: int
    hang_up_ml: int | None
    hang_up_at_ms: int | None
    give_up_at_ms: int | None  # gives up unless the nozzle flows by then (then None)


def lowest_nozzle(mask: int) -> int:
    """The lowest nozzle number in a bit mask (bit 0 = nozzle 1); 0 for an empty mask."""
    return (mask & -mask).bit_length()


class PointCore:
    """One fuelling point (one Modbus unit id): nozzles 1..N, totals, buffer, sale."""

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
        self._customer: _Present | None = None
        self._ended: list[Sale] = []
        # RAM, set by _power_up
        self._state = FPState.IDLE
        self._error = ErrorCode.NONE
        self._sale: _Sale | None = None
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

    # -- reading -------------------------------------------------------------------------

    @property
    def now_s(self) -> float:
        return self._t / 1000

    @property
    def state(self) -> FPState:
        return self._state

    @property
    def error_code(self) -> ErrorCode:
        return self._error

    @property
    def buffer(self) -> tuple[Sale, ...]:
        """The payable buffer, oldest (LAST_SALE_*) first."""
        return tuple(self._buffer)

    @property
    def boot_count(self) -> int:
        return self._boot_count

    @property
    def volume_totals(self) -> tuple[int, ...]:
        return tuple(self._volume_totals)

    @property
    def amount_totals(self) -> tuple[int, ...]:
        return tuple(self._amount_totals)

    @property
    def applied_prices(self) -> tuple[int, ...]:
        return tuple(self._applied)

    @property
    def nozzles_out(self) -> int:
        return self._nozzles_out

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_pending(self) -> bool:
        return self._close_pending

    @property
    def sale_in_progress(self) -> bool:
        return self._sale is not None

    @property
    def customers(self) -> int:
        """Scripted customers at the point: the one holding a nozzle and those queued."""
        return len(self._queue) + (self._customer is not None)

    def next_event_s(self) -> float | None:
        """Model time of the next thing the point will do on its own (flow starting or
        stopping, a timeout, a customer's move), None if nothing: until then, advancing
        it changes nothing but the clock, so a simulator with many points need not."""
        due = self._next_event_ms()
        return None if due >= _NEVER else due / 1000

    def drain_ended(self) -> list[Sale]:
        """Every sale that ended since the last call, oldest first, lost ones included
        (``state`` NONE): the simulator's log, and the tests' view of the whole history."""
        ended, self._ended = self._ended, []
        return ended

    # -- the world acting on the point -----------------------------------------------------

    def advance(self, now_s: float) -> None:
        """Run the physics up to model time ``now_s`` (which must not go backwards)."""
        target = to_ms(now_s)
        if target < self._t:
            raise ValueError(f"model time cannot go back from {self.now_s} to {now_s}")
        self._settle()
        while self._t < target:
            step = min(target, max(self._next_event_ms(), self._t + 1))
            self._flow_to(step)
            self._t = step
            self._settle()

    def lift_nozzle(self, nozzle: int) -> None:
        self._lift(self._bit(nozzle))
        self._settle()

    def hang_up(self, nozzle: int | None = None) -> None:
        """Hang ``nozzle`` up, or every nozzle that is out."""
        mask = self._nozzles_out if nozzle is None else self._bit(nozzle)
        if self._customer is not None and mask & self._bit(self._customer.nozzle):
            self._customer = None
        self._release(mask)
        self._settle()

    def add_customer(self, customer: Customer) -> None:
        """Queue a scripted customer; they act as model time reaches their moments."""
        self._bit(customer.nozzle)
        self._queue.append(customer)
        self._settle()

    def host_activity(self) -> None:
        """The host spoke to this point (any request): restart the host watchdog."""
        self._last_host_ms = self._t
        self._watchdog_armed = True

    def inject_pulser_error(self) -> None:
        """The pulser fails now: the sale (if any) ends, the point goes INOPERATIVE."""
        self._fail(ErrorCode.PULSER, EndReason.ERROR)
        self._settle()

    def power_cycle(self, lose_in_progress: bool = False) -> Sale | None:
        """Power off and on: BOOT_COUNT + 1 and RAM state lost.

        A sale in progress is either completed from what was dispensed (end reason 5,
        into the buffer) or, with ``lose_in_progress``, lost: it leaves no buffer entry
        while the totals keep what flowed, so the host must reconstruct it from totals.
        Returns that sale (``state`` NONE if lost), or None if none was in progress.
        """
        record = self._power_cycle(lose_in_progress)
        self._settle()
        return record

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
        self._sale = _Sale(self._sale_seq, token, mask, preset, value, self._t)
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

    def _volume_limit(self, sale: _Sale) -> int | None:
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

    def _record(self, sale: _Sale, reason: EndReason, state: SaleState) -> Sale:
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

    # -- internals: events -------------------------------------------------------------------

    def _settle(self) -> None:
        """Handle everything due at the current time."""
        for _ in range(1000):
            if not self._fire_one():
                return
        raise RuntimeError("fuelling point model did not settle")  # pragma: no cover

    def _fire_one(self) -> bool:
        t, sale, faults = self._t, self._sale, self.faults
        if sale is not None and self._state in _FLOWED:
            power_loss, pulser = faults.power_loss_at_ml, faults.pulser_error_at_ml
            if power_loss is not None and sale.volume_ml >= power_loss:
                faults.power_loss_at_ml = None
                self._power_cycle(faults.power_loss_loses_sale)
                return True
            if pulser is not None and sale.volume_ml >= pulser:
                faults.pulser_error_at_ml = None
                self._fail(ErrorCode.PULSER, EndReason.ERROR)
                return True
            if sale.preset_limit_ml is not None and sale.volume_ml >= sale.preset_limit_ml:
                self._end_sale(EndReason.PRESET_REACHED)
                return True
            if not self._nozzles_out & self._bit(sale.nozzle) and not faults.stuck_flow:
                self._end_sale(EndReason.NOZZLE_HUNG_UP)
                return True
        customer = self._customer
        if customer is not None:
            served = sale is not None and sale.flowed and sale.nozzle == customer.nozzle
            if served:
                customer.give_up_at_ms = None
            if (
                (
                    customer.hang_up_ml is not None
                    and sale is not None
                    and served
                    and sale.volume_ml >= customer.hang_up_ml
                )
                or (customer.hang_up_at_ms is not None and t >= customer.hang_up_at_ms)
                or (customer.give_up_at_ms is not None and t >= customer.give_up_at_ms)
            ):
                self._customer_leaves()
                return True
        elif (
            self._queue
            and to_ms(self._queue[0].lift_at_s) <= t
            and not self._nozzles_out
            and self._state not in _FLOWED
        ):
            arriving = self._queue.popleft()
            after, patience = arriving.hang_up_after_s, arriving.patience_s
            at_ms = None if after is None else t + to_ms(after)
            give_up_ms = None if patience is None else t + to_ms(patience)
            self._customer = _Present(arriving.nozzle, arriving.hang_up_after_ml, at_ms, give_up_ms)
            self._lift(self._bit(arriving.nozzle))
            return True
        if self._flow_due is not None and t >= self._flow_due:
            self._flow_due = None
            self._flow_begins()
            return True
        timeout_s = self.settings.auth_timeout_s
        if (
            self._state is FPState.AUTHORIZED
            and sale is not None
            and timeout_s
            and t >= sale.authorized_ms + 1000 * timeout_s
        ):
            self._end_sale(EndReason.NO_FLOW_TIMEOUT)
            return True
        if self._watchdog_due() <= t:
            self._watchdog_armed = False
            if self._error is ErrorCode.NONE:
                self._error = ErrorCode.HOST_WATCHDOG
            if self._state is FPState.AUTHORIZED:
                self._end_sale(EndReason.ERROR)
            return True
        return False

    def _flow_begins(self) -> None:
        """The customer squeezes: flow if authorized (or self-authorized in stand-alone)."""
        if self._state is FPState.AUTHORIZED and self._sale is not None and self._sale.nozzle:
            self._start_flow()
        elif (
            self._state is FPState.CALLING
            and self.settings.mode is Mode.STAND_ALONE
            and not self._close_pending
            and not self._buffer_full()
        ):
            nozzle = lowest_nozzle(self._nozzles_out)
            self._begin_sale(0, 1 << (nozzle - 1), PresetType.NONE, 0)
            self._start_flow()

    def _watchdog_due(self) -> int:
        seconds = self.settings.host_watchdog_s
        if not seconds or not self._watchdog_armed or self.settings.mode is Mode.STAND_ALONE:
            return _NEVER
        return self._last_host_ms + 1000 * seconds

    def _next_event_ms(self) -> int:
        t, sale = self._t, self._sale
        times = [self._watchdog_due()]
        if self._flow_due is not None:
            times.append(self._flow_due)
        if self._state is FPState.AUTHORIZED and sale is not None and self.settings.auth_timeout_s:
            times.append(sale.authorized_ms + 1000 * self.settings.auth_timeout_s)
        if self._customer is not None:
            moments = (self._customer.hang_up_at_ms, self._customer.give_up_at_ms)
            times.extend(at for at in moments if at is not None)
        if self._customer is None and self._queue and to_ms(self._queue[0].lift_at_s) > t:
            times.append(to_ms(self._queue[0].lift_at_s))
        if self._state is FPState.FUELLING and sale is not None and sale.curve is not None:
            limit = self._volume_limit(sale)
            if limit is not None and limit > sale.volume_ml:
                elapsed = sale.curve.elapsed_for(limit - sale.segment_base_ml)
                times.append(sale.segment_start_ms + elapsed)
        return min(times)

    def _heartbeat(self) -> int:
        return (self._t - self._boot_ms) // 1000 & U16
