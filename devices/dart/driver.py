"""The DART driver: a DART pump behind the PumpActor's driver interface.

The actor speaks GFD-1's vocabulary (IFSF states, a sale block at the head of a payable
buffer, the switch's token in it, a boot counter); a DART pump has a status byte, the
last filling's volume and amount, and totals on request. This driver maps one onto the
other so the actor, its journal rules and the restart table work unchanged:

* The payable buffer is one sale deep: status 5/6 holds the last filling until RESET,
  which is ``clear_sale``. The sale's number is made from its nozzle and end volume
  total (stable across switch restarts, which a counter here would not be); its start
  total is the end total less its volume.
* The pump carries no token. The switch's sale is recognised by what the journal says
  (:class:`~devices.driver.DriverMemory`, or the ``authorize`` call in this process): a
  completed sale on an allowed nozzle whose start total is the journaled start total is
  ours and carries our token; anything else carries token 0 and is an orphan.
* The pump counts no restarts. Status 0 (NOT PROGRAMMED) after having been programmed is
  a power-up: the boot count (carried forward from the journal) goes up by one, and the
  pump is programmed again (prices, RESET) before anything else.
* A command is one DATA block; the line master resends it under the same block number
  until acknowledged, and the pump does not execute a repeat. An unacknowledged block
  leaves the outcome unknown (``PumpUnreachable``), as a lost GFD-1 write does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import trio

from ..driver import CommandRefused, DriverMemory, PumpDriver, PumpUnreachable
from ..gfd1.codec import NozzleTotals, PointConfig, SaleRecord, StatusBlock
from ..gfd1.states import CommandResult, EndReason, ErrorCode, Flag, PresetType, SaleState
from .line import DartLine, DartLineError
from .master import Answered, Event, LinkStatus, PumpData, StatusChanged
from .pump_state import ENDED, LIVE, DartPumpState, fp_state
from .transactions import (
    CD1,
    DC1,
    AllowedNozzles,
    Command,
    DartCodecError,
    Decimals,
    PresetAmount,
    PresetVolume,
    Prices,
    TotalsRequest,
    Transaction,
)


class DartDriver(PumpDriver):
    protocol: ClassVar[str] = "dart"  # metrics label (a driver without one is GFD-1)

    def __init__(
        self,
        line: DartLine,
        address: int,
        *,
        nozzles: int = 2,
        decimals: Decimals | None = None,
        answer_timeout: float = 2.0,
        command_timeout: float = 3.0,
    ) -> None:
        if not 1 <= nozzles <= 8:
            raise ValueError(f"nozzle count {nozzles}")
        self.line, self.address, self.nozzles = line, address, nozzles
        self.decimals = decimals or Decimals(volume=3, amount=2, price=2)
        self.answer_timeout = answer_timeout
        self.command_timeout = command_timeout
        self.state = DartPumpState()
        self._answered = trio.Event()
        self._data = trio.Event()
        self._boot = 1
        self._programmed_seen = False  # the pump was seen programmed since the boot
        self._prices: tuple[int, ...] | None = None  # milli-fen/L, to program it again
        self._price_set_id = 0
        self._token: int | None = None
        self._sale_nozzles: frozenset[int] = frozenset()
        self._start_totals: dict[int, int] = {}
        self._preset = (PresetType.NONE, 0)
        self._stopped = False  # we sent STOP: a hang-up status means a host stop
        self._last_totals: dict[int, int] = {}  # mL, as of the last totals() call
        self._commands = self._failures = 0
        line.attach(address, self._on_event)

    # -- what the line tells us -------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PumpData):
            self.state.apply(event.transactions)
            self._data.set()
            self._data = trio.Event()
        elif isinstance(event, Answered):
            self._answered.set()
            self._answered = trio.Event()
        elif isinstance(event, StatusChanged) and event.status is LinkStatus.OFFLINE:
            self.state.forget()

    def restore(self, memory: DriverMemory) -> None:
        if memory.boot_count is not None:
            self._boot = memory.boot_count
            self._programmed_seen = True  # it was in contact, so programmed, before
        if memory.price_set_id is not None:
            self._price_set_id = memory.price_set_id
        if memory.token is not None:
            self._token = memory.token
            self._sale_nozzles = memory.nozzles
            self._start_totals = dict(memory.start_volume_totals)

    async def _answer(self) -> None:
        """Wait for the pump's next answer on the line (it is reachable, and whatever it
        had to report has been taken)."""
        event = self._answered
        with trio.move_on_after(self.answer_timeout):
            await event.wait()
            return
        raise PumpUnreachable(f"DART pump {self.address:#04x}: no answer")

    async def _until(self, done: Callable[[], bool], what: str) -> None:
        """Wait until ``done()`` holds after the pump's next blocks (bounded)."""
        with trio.move_on_after(self.answer_timeout):
            while not done():
                await self._data.wait()
            return
        raise PumpUnreachable(f"DART pump {self.address:#04x}: no {what}")

    async def _send(self, transactions: Sequence[Transaction]) -> None:
        self._commands += 1
        try:
            with trio.fail_after(self.command_timeout):
                await self.line.command(self.address, transactions)
        except DartLineError as exc:
            self._failures += 1
            raise PumpUnreachable(str(exc)) from exc
        except trio.TooSlowError:
            self._failures += 1
            raise PumpUnreachable(
                f"DART pump {self.address:#04x}: not acknowledged in {self.command_timeout:g}s"
            ) from None
        except DartCodecError as exc:
            raise ValueError(str(exc)) from exc

    # -- reads ------------------------------------------------------------------------------

    async def _known(self) -> DC1:
        """The pump's status, asked for if nothing was heard since (re)start or an
        outage: a pump reports its status only when it changes."""
        if self.state.status is None:
            await self._send([Command(CD1.RETURN_STATUS)])
            await self._until(lambda: self.state.status is not None, "status")
        assert self.state.status is not None
        return self.state.status

    async def status(self) -> StatusBlock:
        await self._answer()
        await self._known()
        if self.state.status is DC1.NOT_PROGRAMMED:
            await self._program()
        elif self.state.status is not None:
            self._programmed_seen = True
        if self.state.status in ENDED:
            await self._complete_sale_info()
        return self._status_block()

    async def _program(self) -> None:
        """A pump found not programmed has lost its memory (power-up): count a boot once,
        then send prices and RESET if we know them (else it stays INOPERATIVE until
        ``set_prices``)."""
        self._powered_up()
        if self._prices is None:
            return
        await self._send([self._prices_transaction(self._prices)])
        await self._send([Command(CD1.RESET)])
        await self._until(lambda: self.state.status is not DC1.NOT_PROGRAMMED, "status")
        self._programmed_seen = True

    def _powered_up(self) -> None:
        """Status 0 seen: if the pump had been programmed, it restarted; count it once."""
        if self._programmed_seen:
            self._programmed_seen = False
            self._boot += 1
            self._token = None  # whatever it was doing is gone; the totals will tell

    async def _complete_sale_info(self) -> None:
        """A filling ended: make sure its final volume and its nozzle's total were read
        after it ended, so the sale block is complete."""
        state = self.state
        ended_at = state.ended_at or 0
        if state.filling_generation < ended_at:
            await self._send([Command(CD1.RETURN_FILLING_INFO)])
            await self._until(lambda: state.filling_generation >= ended_at, "filling info")
        nozzle = state.nozzle
        if 1 <= nozzle <= self.nozzles:
            read = state.totals.get(nozzle)
            if read is None or read.generation < ended_at:
                await self._request_totals([nozzle])

    async def _request_totals(self, nozzles: Sequence[int]) -> None:
        since = self.state.generation
        await self._send([TotalsRequest(n) for n in nozzles])

        def arrived() -> bool:
            return all(
                (r := self.state.totals.get(n)) is not None and r.generation > since
                for n in nozzles
            )

        await self._until(arrived, "totals")

    async def totals(self) -> tuple[NozzleTotals, ...]:
        nozzles = list(range(1, self.nozzles + 1))
        await self._request_totals(nozzles)
        d = self.decimals
        out = []
        for n in nozzles:
            read = self.state.totals[n]
            out.append(NozzleTotals(d.to_ml(read.volume), d.to_fen(read.amount or 0)))
        self._last_totals = {n: t.volume_ml for n, t in enumerate(out, start=1)}
        return tuple(out)

    async def config(self) -> PointConfig:
        return PointConfig(self.nozzles, (0,) * self.nozzles, f"DART {self.address:#04x}")

    # -- the status block -------------------------------------------------------------------

    def _status_block(self) -> StatusBlock:
        s, d = self.state, self.decimals
        live = s.status in LIVE
        out_mask = 1 << (s.nozzle - 1) if s.nozzle_out and 1 <= s.nozzle <= 8 else 0
        flags = Flag.TOTALS_VALID | (Flag.NOZZLE_OUT if out_mask else Flag(0))
        return StatusBlock(
            map_version=1,
            fp_state=fp_state(s),
            flags=flags,
            active_nozzle=s.nozzle if 0 <= s.nozzle <= 8 else 0,
            nozzle_out_mask=out_mask,
            error_code=ErrorCode.NONE,
            cur_sale_seq=0,
            cur_volume_ml=d.to_ml(s.volume) if live else 0,
            cur_amount_fen=d.to_fen(s.amount) if live else 0,
            cur_unit_price=d.to_price(s.price),
            flow_rate_ml_min=0,
            cur_auth_token=(self._token or 0) if live else 0,
            cmd_ack_seq=0,
            cmd_result=CommandResult.OK,
            cmd_ack_code=0,
            heartbeat=s.generation & 0xFFFF,
            boot_count=self._boot,
            unpaid_count=1 if s.status in ENDED else 0,
            price_set_id=self._price_set_id,
            last_sale=self._sale_record() if s.status in ENDED else None,
        )

    def _sale_record(self) -> SaleRecord | None:
        s, d = self.state, self.decimals
        nozzle = s.nozzle
        read = s.totals.get(nozzle)
        if not 1 <= nozzle <= 8 or read is None:
            return None
        volume = d.to_ml(s.volume)
        end_total = d.to_ml(read.volume)
        start_total = end_total - volume
        ours = (
            self._token is not None
            and (not self._sale_nozzles or nozzle in self._sale_nozzles)
            and self._start_totals.get(nozzle, start_total) == start_total
        )
        if s.status is DC1.PRESET_REACHED:
            reason = EndReason.PRESET_REACHED
        elif self._stopped and ours:
            reason = EndReason.HOST_STOP
        else:
            reason = EndReason.NOZZLE_HUNG_UP if volume else EndReason.NO_FLOW_TIMEOUT
        preset_type, preset_value = self._preset if ours else (PresetType.NONE, 0)
        return SaleRecord(
            seq=end_total * 16 + nozzle,
            nozzle=nozzle,
            end_reason=reason,
            volume_ml=volume,
            amount_fen=d.to_fen(s.amount),
            unit_price=d.to_price(s.price),
            start_volume_total_ml=max(0, start_total),
            end_volume_total_ml=end_total,
            auth_token=(self._token or 0) if ours else 0,
            preset_type=preset_type,
            preset_value=preset_value,
            price_set_id=self._price_set_id,
            state=SaleState.PAYABLE,
        )

    # -- commands ---------------------------------------------------------------------------

    async def _expect(self, statuses: frozenset[DC1], command: str) -> None:
        """After a command: the pump's status must move into ``statuses``; if it does not
        within the answer timeout, the pump refused it (DART has no result code)."""
        try:
            await self._until(lambda: self.state.status in statuses, f"{command} status")
        except PumpUnreachable:
            raise CommandRefused(command, CommandResult.ILLEGAL_STATE) from None

    async def authorize(
        self, *, token: int, nozzle_mask: int, preset_type: PresetType, preset_value: int
    ) -> None:
        nozzles = tuple(n for n in range(1, 9) if nozzle_mask & (1 << (n - 1))) or tuple(
            range(1, self.nozzles + 1)
        )
        block: list[Transaction] = [AllowedNozzles(nozzles)]
        if preset_type is PresetType.VOLUME:
            block.append(PresetVolume(self._convert(self.decimals.from_ml, preset_value)))
        elif preset_type is PresetType.AMOUNT:
            block.append(PresetAmount(self._convert(self.decimals.from_fen, preset_value)))
        block.append(Command(CD1.AUTHORIZE))
        if await self._known() is not DC1.RESET:
            raise CommandRefused("AUTHORIZE", CommandResult.ILLEGAL_STATE)
        # Remembered before sending: if the ACK is lost but the pump ran it, the sale that
        # follows is still recognised as ours.
        self._token, self._sale_nozzles = token, frozenset(nozzles)
        self._start_totals = dict(self._last_totals)
        self._preset, self._stopped = (preset_type, preset_value), False
        await self._send(block)
        await self._expect(LIVE | ENDED, "AUTHORIZE")

    @staticmethod
    def _convert(convert: Callable[[int], int], value: int) -> int:
        try:
            return convert(value)
        except DartCodecError as exc:
            raise ValueError(str(exc)) from exc

    async def stop(self) -> None:
        self._stopped = True
        await self._send([Command(CD1.STOP)])

    async def emergency_stop(self) -> None:
        """The subset has no emergency stop of its own: STOP, at once."""
        await self.stop()

    async def cancel_authorization(self) -> None:
        await self.stop()

    async def suspend(self) -> None:
        await self._send([Command(CD1.SUSPEND)])

    async def resume(self) -> None:
        await self._send([Command(CD1.RESUME)])

    async def lock_sale(self, sale_seq: int) -> None:
        """Nothing to do: the pump holds its one sale until RESET anyway."""

    async def clear_sale(self, sale_seq: int) -> None:
        if await self._known() not in ENDED:
            return  # already reset: a resend after a lost acknowledgement
        await self._complete_sale_info()  # its number needs its end total
        record = self._sale_record()
        if record is not None and record.seq != sale_seq:
            raise CommandRefused("CLEAR_SALE", CommandResult.BAD_ARG)
        await self._send([Command(CD1.RESET)])
        await self._expect(frozenset(DC1) - ENDED, "RESET")
        self._token, self._stopped = None, False

    def _prices_transaction(self, prices: Sequence[int]) -> Prices:
        return Prices(tuple(self._convert(self.decimals.from_price, p) for p in prices))

    async def set_prices(self, prices: Sequence[int], price_set_id: int) -> None:
        transaction = self._prices_transaction(prices)
        if await self._known() not in (DC1.RESET, DC1.NOT_PROGRAMMED):
            raise CommandRefused("APPLY_PRICES", CommandResult.ILLEGAL_STATE)
        if self.state.status is DC1.NOT_PROGRAMMED:
            self._powered_up()
        await self._send([transaction])
        self._prices, self._price_set_id = tuple(prices), price_set_id
        if self.state.status is DC1.NOT_PROGRAMMED:
            await self._send([Command(CD1.RESET)])
            await self._until(lambda: self.state.status is not DC1.NOT_PROGRAMMED, "status")
            self._programmed_seen = True

    async def open(self) -> None:
        if await self._known() is DC1.SWITCHED_OFF:
            await self._send([Command(CD1.RESET)])
            await self._expect(frozenset({DC1.RESET}), "OPEN")

    async def close(self) -> None:
        await self._send([Command(CD1.SWITCH_OFF)])
        await self._expect(frozenset({DC1.SWITCHED_OFF}), "CLOSE")

    async def reset_error(self) -> None:
        self.state.alarm = None

    def statistics(self) -> dict[str, Any]:
        s = self.state
        return {
            "address": self.address,
            "protocol": "dart",
            "status": s.status.name if s.status is not None else None,
            "boot_count": self._boot,
            "commands": self._commands,
            "failures": self._failures,
            "alarm": s.alarm,
            "blocks": s.generation,
        }
