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

The code is in three modules: this one (:class:`PointCore`: reading, the world acting on
the point, and the events that fire as model time passes), :mod:`devices.sim.point_mechanics`
(the point's memory and the transitions the events call) and :mod:`devices.sim.point_sale`
(the sale in progress and the scripted customer).
"""

from __future__ import annotations

from devices.gfd1.states import EndReason, ErrorCode, FPState, Mode, PresetType

from .point_mechanics import PointMechanics
from .point_sale import AT_REST, FLOWED, IN_SALE, NEVER, PresentCustomer, lowest_nozzle
from .records import U16, Customer, Sale, to_ms

__all__ = ["AT_REST", "IN_SALE", "PointCore", "lowest_nozzle"]


class PointCore(PointMechanics):
    """One fuelling point (one Modbus unit id): nozzles 1..N, totals, buffer, sale."""

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
        return None if due >= NEVER else due / 1000

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

    # -- internals: events -------------------------------------------------------------------

    def _settle(self) -> None:
        """Handle everything due at the current time."""
        for _ in range(1000):
            if not self._fire_one():
                return
        raise RuntimeError("fuelling point model did not settle")  # pragma: no cover

    def _fire_one(self) -> bool:
        t, sale, faults = self._t, self._sale, self.faults
        if sale is not None and self._state in FLOWED:
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
            and self._state not in FLOWED
        ):
            arriving = self._queue.popleft()
            after, patience = arriving.hang_up_after_s, arriving.patience_s
            at_ms = None if after is None else t + to_ms(after)
            give_up_ms = None if patience is None else t + to_ms(patience)
            self._customer = PresentCustomer(
                arriving.nozzle, arriving.hang_up_after_ml, at_ms, give_up_ms
            )
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
            return NEVER
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
