"""The simulated GFD-1 fuelling point as the host sees it: commands, registers, persistence.

:class:`FuellingPoint` adds the host's side to :class:`~devices.sim.fuelling_point.PointCore`:
the command block (:meth:`FuellingPoint.command`), the holding registers (staged prices,
settings), the register values as the codec's own types (:meth:`FuellingPoint.status`,
``totals``, ``config``, ``settings_block``, ``staged_prices``) and ``to_dict`` /
``from_dict``. The Modbus server owns the unit id, the clock and the transport; it calls
``advance(now)`` before it answers, and ``host_activity()`` for every request.

Command results, state by state (``-`` = ILLEGAL_STATE)::

                 IDLE CALLING AUTHORIZED FUELLING SUSPENDED COMPLETED CLOSED INOPERATIVE
  AUTHORIZE       OK    OK        -         -         -        OK       -        -
  STOP            -     -        OK¹       OK²       OK²        -       -        -
  SUSPEND         -     -         -        OK        OK³        -       -        -
  RESUME          -     -         -        OK³       OK         -       -        -
  CANCEL_AUTH     -     -        OK¹        -         -         -       -        -
  CLOSE           OK⁴   OK⁴       -         -         -        OK⁴     OK³       -
  APPLY_PRICES    OK    OK      BUSY      BUSY      BUSY       OK      OK       OK
  OPEN, RESET_ERROR, EMERGENCY_STOP: OK in every state.
  LOCK_SALE, CLEAR_SALE: OK in every state if ARG_SALE_SEQ names LAST_SALE_SEQ, else BAD_ARG.

  ¹ a zero sale (volume 0) joins the buffer, back to IDLE/CALLING   ² the sale completes
  ³ already so: nothing to do          ⁴ CLOSED now if the buffer is empty, else once it is

AUTHORIZE is also ILLEGAL_STATE while a CLOSE is pending; BAD_ARG for a mask naming
nozzles the point lacks, a bad preset type, a preset without a value (or a value without
a preset), or a mask that excludes the nozzle already out in CALLING; BUFFER_FULL when
UNPAID_COUNT has reached MAX_UNPAID (0 = no limit). APPLY_PRICES is BUSY (try again) from
authorization to the end of the sale, so a sale is priced with one price set from start
to end; BAD_ARG if a nozzle it applies has staged price 0. EMERGENCY_STOP ends a sale in
progress (end reason 3, host stop) and leaves the point INOPERATIVE with ERROR_CODE 2
until RESET_ERROR. Unknown codes answer UNKNOWN_CMD. With the BUSY fault armed, the next
k commands answer BUSY and do nothing.

CMD_SEQ: a command whose ``seq`` equals CMD_ACK_SEQ is a resend: nothing happens and the
recorded result is returned. Any other seq executes, and CMD_ACK_SEQ, CMD_RESULT and
CMD_ACK_CODE then describe it, refusals included (a BUSY command is retried with a new
seq). The acknowledgement is RAM: it is 0 after a power cycle, so hosts number from 1.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from devices.gfd1.codec import NozzleTotals, PointConfig, PointSettings, StatusBlock
from devices.gfd1.states import (
    Command,
    CommandResult,
    EndReason,
    ErrorCode,
    Flag,
    FPState,
    Mode,
    PresetType,
    SaleState,
)

from .faults import Faults
from .fuelling_point import AT_REST, IN_SALE, PointCore, lowest_nozzle
from .persistence import (
    FORMAT,
    Reader,
    sale_from_dict,
    sale_to_dict,
    settings_from_dict,
    settings_to_dict,
    spec_from_dict,
    spec_to_dict,
)
from .records import U16, U32, SimSettings, check_range

MAP_VERSION = 1


@dataclass(frozen=True, slots=True)
class _Args:
    nozzle_mask: int
    preset_type: int
    preset_value: int
    token: int
    sale_seq: int
    price_set_id: int


class FuellingPoint(PointCore):
    """A simulated GFD-1 fuelling point; see the module docstring for command semantics."""

    # -- holding registers ------------------------------------------------------------------

    def command(
        self,
        seq: int,
        code: int,
        nozzle_mask: int = 0,
        preset_type: int = 0,
        preset_value: int = 0,
        token: int = 0,
        sale_seq: int = 0,
        price_set_id: int = 0,
    ) -> CommandResult:
        """Execute one command block (HR 1000-1010), as written with one FC16."""
        for name, value, top in (
            ("seq", seq, U16),
            ("code", code, U16),
            ("nozzle_mask", nozzle_mask, U16),
            ("preset_type", preset_type, U16),
            ("preset_value", preset_value, U32),
            ("token", token, U32),
            ("sale_seq", sale_seq, U32),
            ("price_set_id", price_set_id, U16),
        ):
            check_range(name, value, top)
        self.host_activity()
        if seq == self._ack_seq:
            return self._ack_result
        if self.faults.busy_commands > 0:
            self.faults.busy_commands -= 1
            result = CommandResult.BUSY
        else:
            args = _Args(nozzle_mask, preset_type, preset_value, token, sale_seq, price_set_id)
            try:
                handler = _HANDLERS[Command(code)]
            except ValueError:
                result = CommandResult.UNKNOWN_CMD
            else:
                result = handler(self, args)
        self._ack_seq, self._ack_result, self._ack_code = seq, result, code
        self._settle()
        return result

    def stage_price(self, nozzle: int, price: int) -> None:
        """PRICE_NOZZLE_n (HR 1100+): staged, in force after APPLY_PRICES."""
        self._bit(nozzle)
        check_range("price", price, U32)
        self._staged[nozzle - 1] = price

    def configure(
        self,
        *,
        host_watchdog_s: int | None = None,
        max_unpaid: int | None = None,
        auth_timeout_s: int | None = None,
        mode: int | None = None,
    ) -> None:
        """Write settings (HR 1200-1203). Out-of-range values raise ValueError (the server
        answers Modbus exception 03); they apply from now on."""
        s = self.settings
        new = SimSettings(
            s.host_watchdog_s if host_watchdog_s is None else host_watchdog_s,
            s.max_unpaid if max_unpaid is None else max_unpaid,
            s.auth_timeout_s if auth_timeout_s is None else auth_timeout_s,
            s.mode if mode is None else Mode(mode),
        )
        self.settings = new
        self._settle()

    # -- commands ---------------------------------------------------------------------------

    def _authorize(self, a: _Args) -> CommandResult:
        if self._state not in AT_REST or self._close_pending:
            return CommandResult.ILLEGAL_STATE
        mask = a.nozzle_mask or self._all_mask
        try:
            preset = PresetType(a.preset_type)
        except ValueError:
            return CommandResult.BAD_ARG
        if (
            mask & ~self._all_mask
            or (preset is PresetType.NONE) != (a.preset_value == 0)
            or (self._state is FPState.CALLING and not mask & self._nozzles_out)
        ):
            return CommandResult.BAD_ARG
        if self._buffer_full():
            return CommandResult.BUFFER_FULL
        self._begin_sale(a.token, mask, preset, a.preset_value)
        return CommandResult.OK

    def _stop(self, a: _Args) -> CommandResult:
        if self._state not in IN_SALE:
            return CommandResult.ILLEGAL_STATE
        self._end_sale(EndReason.HOST_STOP)
        return CommandResult.OK

    def _cancel_auth(self, a: _Args) -> CommandResult:
        if self._state is not FPState.AUTHORIZED:
            return CommandResult.ILLEGAL_STATE
        self._end_sale(EndReason.HOST_STOP)
        return CommandResult.OK

    def _suspend(self, a: _Args) -> CommandResult:
        if self._state is FPState.FUELLING:
            self._state = FPState.SUSPENDED_FUELLING
        elif self._state is not FPState.SUSPENDED_FUELLING:
            return CommandResult.ILLEGAL_STATE
        return CommandResult.OK

    def _resume(self, a: _Args) -> CommandResult:
        sale = self._sale
        if self._state is FPState.SUSPENDED_FUELLING and sale is not None:
            self._state = FPState.FUELLING
            sale.segment_start_ms, sale.segment_base_ml = self._t, sale.volume_ml
        elif self._state is not FPState.FUELLING:
            return CommandResult.ILLEGAL_STATE
        return CommandResult.OK

    def _names_head(self, a: _Args) -> bool:
        return bool(self._buffer) and a.sale_seq == self._buffer[0].seq

    def _lock_sale(self, a: _Args) -> CommandResult:
        if not self._names_head(a):
            return CommandResult.BAD_ARG
        self._buffer[0] = replace(self._buffer[0], state=SaleState.LOCKED)
        return CommandResult.OK

    def _clear_sale(self, a: _Args) -> CommandResult:
        if not self._names_head(a):
            return CommandResult.BAD_ARG
        del self._buffer[0]
        if self._state is FPState.COMPLETED and not self._buffer:
            self._state = self._idle_state()
        self._maybe_close()
        return CommandResult.OK

    def _open(self, a: _Args) -> CommandResult:
        self._closed = self._close_pending = False
        if self._state is FPState.CLOSED:
            self._state = self._rest_state()
        return CommandResult.OK

    def _close(self, a: _Args) -> CommandResult:
        if self._state is FPState.CLOSED:
            return CommandResult.OK
        if self._state not in AT_REST:
            return CommandResult.ILLEGAL_STATE
        self._close_pending = True
        self._maybe_close()
        return CommandResult.OK

    def _reset_error(self, a: _Args) -> CommandResult:
        self._error = ErrorCode.NONE
        if self._state is FPState.INOPERATIVE:
            self._state = self._rest_state()
            self._maybe_close()
        return CommandResult.OK

    def _apply_prices(self, a: _Args) -> CommandResult:
        if self._state in IN_SALE:
            return CommandResult.BUSY
        mask = a.nozzle_mask or self._all_mask
        if mask & ~self._all_mask:
            return CommandResult.BAD_ARG
        nozzles = [n for n in range(self.spec.nozzle_count) if mask >> n & 1]
        if any(self._staged[i] == 0 for i in nozzles):
            return CommandResult.BAD_ARG
        for i in nozzles:
            self._applied[i] = self._staged[i]
        self._price_set_id = a.price_set_id
        return CommandResult.OK

    def _emergency_stop(self, a: _Args) -> CommandResult:
        self._fail(ErrorCode.EMERGENCY_STOP, EndReason.HOST_STOP)
        return CommandResult.OK

    # -- input registers ---------------------------------------------------------------------

    def flags(self) -> Flag:
        sale, flags = self._sale, Flag(0)
        if self._nozzles_out:
            flags |= Flag.NOZZLE_OUT
        if self._state is FPState.FUELLING:
            flags |= Flag.FLOW
        if sale is not None and sale.preset_type is not PresetType.NONE:
            flags |= Flag.PRESET_ACTIVE
        if self._state is FPState.SUSPENDED_FUELLING:
            flags |= Flag.SUSPENDED
        if self._error is not ErrorCode.NONE:
            flags |= Flag.ERROR
        if self.settings.mode is Mode.STAND_ALONE:
            flags |= Flag.STAND_ALONE
        if self._error is not ErrorCode.PULSER:
            flags |= Flag.TOTALS_VALID
        if self._buffer_full():
            flags |= Flag.UNPAID_BUFFER_FULL
        if self._staged != self._applied:
            flags |= Flag.PRICE_CHANGE_PENDING
        return flags

    def status(self) -> StatusBlock:
        """The status block (IR 0-56) now, as the codec's own value (call ``advance`` first)."""
        sale = self._sale
        flow_rate = 0
        if self._state is FPState.FUELLING and sale is not None and sale.curve is not None:
            flow_rate = sale.curve.rate_ml_min(self._t - sale.segment_start_ms)
        if sale is not None and sale.nozzle:
            active = sale.nozzle
        else:
            active = lowest_nozzle(self._nozzles_out)
        return StatusBlock(
            map_version=MAP_VERSION,
            fp_state=self._state,
            flags=self.flags(),
            active_nozzle=active,
            nozzle_out_mask=self._nozzles_out,
            error_code=self._error,
            cur_sale_seq=self._sale_seq,
            cur_volume_ml=self._cur_volume,
            cur_amount_fen=self._cur_amount,
            cur_unit_price=self._cur_price,
            flow_rate_ml_min=flow_rate,
            cur_auth_token=self._cur_token,
            cmd_ack_seq=self._ack_seq,
            cmd_result=self._ack_result,
            cmd_ack_code=self._ack_code,
            heartbeat=self._heartbeat(),
            boot_count=self._boot_count,
            unpaid_count=len(self._buffer),
            price_set_id=self._price_set_id,
            last_sale=self._buffer[0].record() if self._buffer else None,
        )

    def totals(self) -> tuple[NozzleTotals, ...]:
        """The totals block (IR 100+), one entry per nozzle, nozzle 1 first (the register
        map reads the totals of nozzles the point lacks as 0)."""
        pairs = zip(self._volume_totals, self._amount_totals, strict=True)
        return tuple(NozzleTotals(volume, amount) for volume, amount in pairs)

    def config(self) -> PointConfig:
        """The configuration block (IR 200-217)."""
        spec = self.spec
        return PointConfig(spec.nozzle_count, tuple(n.grade for n in spec.nozzles), spec.identity)

    def settings_block(self) -> PointSettings:
        """The settings (HR 1200-1203) as the codec's value."""
        s = self.settings
        return PointSettings(s.host_watchdog_s, s.max_unpaid, s.auth_timeout_s, s.mode)

    @property
    def staged_prices(self) -> tuple[int, ...]:
        """PRICE_NOZZLE_n (HR 1100+), nozzle 1 first: what APPLY_PRICES would put in force."""
        return tuple(self._staged)

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The non-volatile memory, JSON-able (integers, strings, booleans, lists).

        A sale in progress is RAM and is not saved (its flow is, in the totals):
        restoring from this is a power cycle that loses it.
        """
        return {
            "format": FORMAT,
            "spec": spec_to_dict(self.spec),
            "settings": settings_to_dict(self.settings),
            "boot_count": self._boot_count,
            "sale_seq": self._sale_seq,
            "price_set_id": self._price_set_id,
            "applied_prices": list(self._applied),
            "staged_prices": list(self._staged),
            "volume_totals_ml": list(self._volume_totals),
            "amount_totals_fen": list(self._amount_totals),
            "buffer": [sale_to_dict(s) for s in self._buffer],
            "closed": self._closed,
            "close_pending": self._close_pending,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        rng: random.Random,
        *,
        now_s: float = 0.0,
        faults: Faults | None = None,
        power_up: bool = True,
    ) -> FuellingPoint:
        """Rebuild a point from :meth:`to_dict`. With ``power_up`` (a process restart is
        one) BOOT_COUNT goes up by one; without it the point is restored exactly."""
        r = Reader(data, "fuelling point")
        if r.integer("format") != FORMAT:
            raise ValueError(f"unsupported fuelling point format {data.get('format')!r}")
        spec = spec_from_dict(r.mapping("spec"))
        point = cls(spec, rng, now_s=now_s, settings=settings_from_dict(r.mapping("settings")))
        if faults is not None:
            point.faults = faults
        count = spec.nozzle_count
        point._boot_count = r.integer("boot_count", U32)
        point._sale_seq = r.integer("sale_seq", U32)
        point._price_set_id = r.integer("price_set_id", U16)
        point._applied = r.ints("applied_prices", count, U32)
        point._staged = r.ints("staged_prices", count, U32)
        point._volume_totals = r.ints("volume_totals_ml", count)
        point._amount_totals = r.ints("amount_totals_fen", count)
        point._buffer = [sale_from_dict(d) for d in r.mappings("buffer")]
        if 0 in point._applied or any(not 1 <= s.nozzle <= count for s in point._buffer):
            raise ValueError("fuelling point: a zero price or a sale on a missing nozzle")
        point._closed = r.boolean("closed")
        point._close_pending = r.boolean("close_pending")
        if power_up:
            point._boot_count = point._boot_count % U32 + 1
        point._power_up()
        return point


_HANDLERS: dict[Command, Callable[[FuellingPoint, _Args], CommandResult]] = {
    Command.AUTHORIZE: FuellingPoint._authorize,
    Command.STOP: FuellingPoint._stop,
    Command.SUSPEND: FuellingPoint._suspend,
    Command.RESUME: FuellingPoint._resume,
    Command.LOCK_SALE: FuellingPoint._lock_sale,
    Command.CLEAR_SALE: FuellingPoint._clear_sale,
    Command.OPEN: FuellingPoint._open,
    Command.CLOSE: FuellingPoint._close,
    Command.RESET_ERROR: FuellingPoint._reset_error,
    Command.APPLY_PRICES: FuellingPoint._apply_prices,
    Command.EMERGENCY_STOP: FuellingPoint._emergency_stop,
    Command.CANCEL_AUTH: FuellingPoint._cancel_auth,
}
