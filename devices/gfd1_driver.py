"""The GFD-1 driver: a PumpDriver over a Modbus register client (TCP gateway or RTU line).

A command is one FC16 write of the command block with a fresh CMD_SEQ, then status reads
until CMD_ACK_SEQ shows that sequence number, then CMD_RESULT. If the write or a read goes
unanswered, the *same* block is written again: the pump executes a block only when its
CMD_SEQ differs from CMD_ACK_SEQ, so a resend can never execute a command twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from .driver import CommandRefused, PumpDriver, PumpFault, PumpUnreachable
from .gfd1 import (
    COMMAND_START,
    CONFIG_COUNT,
    CONFIG_START,
    PRICES_START,
    STATUS_COUNT,
    STATUS_START,
    TOTALS_COUNT,
    TOTALS_START,
    CodecError,
    Command,
    CommandBlock,
    CommandResult,
    NozzleTotals,
    PointConfig,
    PresetType,
    StatusBlock,
    decode_config,
    decode_status,
    decode_totals,
    encode_command,
    encode_prices,
)
from .modbus import ModbusError, ModbusException, ModbusFrameError, RegisterClient


class Gfd1Driver(PumpDriver):
    def __init__(
        self,
        client: RegisterClient,
        unit: int,
        *,
        nozzles: int = 8,
        command_timeout: float = 5.0,
        ack_poll_s: float = 0.05,
    ) -> None:
        self.client = client
        self.unit = unit
        self.nozzles = nozzles
        self.command_timeout = command_timeout
        self.ack_poll_s = ack_poll_s
        self._seq: int | None = None  # last CMD_SEQ we wrote
        self._commands = 0
        self._resends = 0
        self._refusals = 0
        self._faults = 0

    # -- reads ---------------------------------------------------------------------------

    async def _read(self, address: int, count: int) -> list[int]:
        try:
            return await self.client.read_input_registers(self.unit, address, count)
        except (ModbusFrameError, ModbusException) as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc
        except ModbusError as exc:
            raise PumpUnreachable(f"unit {self.unit}: {exc}") from exc

    async def status(self) -> StatusBlock:
        regs = await self._read(STATUS_START, STATUS_COUNT)
        try:
            return decode_status(regs)
        except CodecError as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc

    async def totals(self) -> tuple[NozzleTotals, ...]:
        regs = await self._read(TOTALS_START, TOTALS_COUNT)
        try:
            return decode_totals(regs, self.nozzles)
        except CodecError as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc

    async def config(self) -> PointConfig:
        regs = await self._read(CONFIG_START, CONFIG_COUNT)
        try:
            config = decode_config(regs)
        except CodecError as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc
        self.nozzles = config.nozzle_count
        return config

    # -- commands ------------------------------------------------------------------------

    async def _write(self, address: int, values: Sequence[int]) -> None:
        try:
            await self.client.write_registers(self.unit, address, list(values))
        except ModbusException as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc
        except ModbusError as exc:
            raise PumpUnreachable(f"unit {self.unit}: {exc}") from exc

    async def _command(self, block: CommandBlock) -> None:
        """Write, then wait for the pump to acknowledge this CMD_SEQ; resend on silence."""
        self._commands += 1
        frame = encode_command(block)
        with trio.move_on_after(self.command_timeout) as scope:
            while True:
                try:
                    await self._write(COMMAND_START, frame)
                    while True:
                        status = await self.status()
                        if status.cmd_ack_seq == block.seq:
                            if status.cmd_result is not CommandResult.OK:
                                self._refusals += 1
                                raise CommandRefused(block.code.name, status.cmd_result)
                            return
                        await trio.sleep(self.ack_poll_s)
                except PumpUnreachable:
                    self._resends += 1  # the same block again: harmless if it already ran
                    await trio.sleep(self.ack_poll_s)
        if scope.cancelled_caught:
            raise PumpUnreachable(
                f"unit {self.unit}: {block.code.name} (seq {block.seq}) not acknowledged "
                f"within {self.command_timeout:g}s; outcome unknown"
            )

    async def _next_seq(self) -> int:
        if self._seq is None:
            self._seq = (await self.status()).cmd_ack_seq
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; never equal to the last one acked
        return self._seq

    async def _simple(self, code: Command, **args: Any) -> None:
        await self._command(CommandBlock(seq=await self._next_seq(), code=code, **args))

    async def authorize(
        self, *, token: int, nozzle_mask: int, preset_type: PresetType, preset_value: int
    ) -> None:
        await self._simple(
            Command.AUTHORIZE,
            auth_token=token,
            nozzle_mask=nozzle_mask,
            preset_type=preset_type,
            preset_value=preset_value,
        )

    async def stop(self) -> None:
        await self._simple(Command.STOP)

    async def suspend(self) -> None:
        await self._simple(Command.SUSPEND)

    async def resume(self) -> None:
        await self._simple(Command.RESUME)

    async def cancel_authorization(self) -> None:
        await self._simple(Command.CANCEL_AUTH)

    async def emergency_stop(self) -> None:
        await self._simple(Command.EMERGENCY_STOP)

    async def lock_sale(self, sale_seq: int) -> None:
        await self._simple(Command.LOCK_SALE, sale_seq=sale_seq)

    async def clear_sale(self, sale_seq: int) -> None:
        await self._simple(Command.CLEAR_SALE, sale_seq=sale_seq)

    async def set_prices(self, prices: Sequence[int], price_set_id: int) -> None:
        await self._write(PRICES_START, encode_prices(prices))
        await self._simple(Command.APPLY_PRICES, price_set_id=price_set_id)

    async def open(self) -> None:
        await self._simple(Command.OPEN)

    async def close(self) -> None:
        await self._simple(Command.CLOSE)

    async def reset_error(self) -> None:
        await self._simple(Command.RESET_ERROR)

    def statistics(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "commands": self._commands,
            "resends": self._resends,
            "refusals": self._refusals,
            "faults": self._faults,
            "last_seq": self._seq,
        }
