"""The GFD-1 driver: a PumpDriver over a Modbus register client (TCP gateway or RTU line).

A command is one FC16 write of the command block with a fresh CMD_SEQ, then status reads
until CMD_ACK_SEQ shows that sequence number, then CMD_RESULT. If the write or a read goes
unanswered (or its reply is garbled), the *same* block is written again: the pump executes
a block only when its CMD_SEQ differs from CMD_ACK_SEQ, so a resend can never execute a
command twice.

Two kinds of "busy" are transient and retried here, a bounded number of times, so that the
PumpActor sees them only when they persist: a Modbus exception 06 reply (the request was
not executed: send it again) and a CMD_RESULT of BUSY (the block was not executed: send it
again with a new CMD_SEQ, as the GFD-1 spec asks).

CMD_ACK_CODE tells our acknowledgement from another host's: if the pump acknowledges our
CMD_SEQ with another command's code, someone else used that number first and the pump
took our block for a resend; it is sent again under the next number.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from .driver import CommandInterrupted, CommandRefused, PumpDriver, PumpFault, PumpUnreachable
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
from .modbus import (
    ExceptionCode,
    ModbusError,
    ModbusException,
    ModbusFrameError,
    RegisterClient,
    Request,
)


class _SeqTaken(Exception):
    """The pump acknowledged our CMD_SEQ with another command's code."""

    def __init__(self, ack_seq: int) -> None:
        super().__init__(f"CMD_SEQ {ack_seq} acknowledged for another command")
        self.ack_seq = ack_seq


T = TypeVar("T")


class Gfd1Driver(PumpDriver):
    def __init__(
        self,
        client: RegisterClient,
        unit: int,
        *,
        nozzles: int = 8,
        command_timeout: float = 5.0,
        ack_poll_s: float = 0.05,
        busy_retries: int = 5,
    ) -> None:
        self.client = client
        self.unit = unit
        self.nozzles = nozzles
        self.command_timeout = command_timeout
        self.ack_poll_s = ack_poll_s
        self.busy_retries = busy_retries
        self._status_request = Request.read_input(unit, STATUS_START, STATUS_COUNT)
        self._seq: int | None = None  # last CMD_SEQ we wrote
        self._boot_count: int | None = None  # as of the last status read
        self._commands = 0
        self._resends = 0
        self._refusals = 0
        self._faults = 0
        self._busy = 0  # exception 06 replies and BUSY results, each retried
        self._collisions = 0  # our CMD_SEQ was another host's

    def _busy_reply(self, exc: ModbusException, attempt: int) -> bool:
        """Exception 06: the device did nothing; worth another try (until retries run out)."""
        if exc.exception_code is not ExceptionCode.DEVICE_BUSY:
            return False
        self._busy += 1
        return attempt < self.busy_retries

    # -- reads ---------------------------------------------------------------------------

    async def _exchange(self, op: Callable[[], Awaitable[T]], *, garbled_is_fault: bool) -> T:
        """One request, retried on exception 06, with errors mapped to the driver's own.

        A garbled read is a device fault; a garbled write reply leaves the write's outcome
        unknown, like silence, so the caller resends (harmless for what it writes).
        """
        for attempt in range(self.busy_retries + 1):
            try:
                return await op()
            except ModbusException as exc:
                if self._busy_reply(exc, attempt):
                    await trio.sleep(self.ack_poll_s)
                    continue
                if exc.exception_code is ExceptionCode.DEVICE_BUSY:
                    raise PumpUnreachable(f"unit {self.unit}: busy: {exc}") from exc
                self._faults += 1
                raise PumpFault(f"unit {self.unit}: {exc}") from exc
            except ModbusFrameError as exc:
                if not garbled_is_fault:
                    raise PumpUnreachable(f"unit {self.unit}: {exc}") from exc
                self._faults += 1
                raise PumpFault(f"unit {self.unit}: {exc}") from exc
            except ModbusError as exc:
                raise PumpUnreachable(f"unit {self.unit}: {exc}") from exc
        raise AssertionError("the last attempt returns or raises")  # pragma: no cover

    async def _read(self, address: int, count: int) -> list[int]:
        return await self._exchange(
            lambda: self.client.read_input_registers(self.unit, address, count),
            garbled_is_fault=True,
        )

    async def status(self) -> StatusBlock:
        request = self._status_request  # the same every poll: built once
        regs = await self._exchange(lambda: self.client.execute(request), garbled_is_fault=True)
        try:
            status = decode_status(regs)
        except CodecError as exc:
            self._faults += 1
            raise PumpFault(f"unit {self.unit}: {exc}") from exc
        self._boot_count = status.boot_count
        if self._seq is None:
            # Number our commands on from the pump's last one. Learnt here, from the reads
            # that precede any command, the first command needs no read of its own that
            # could fail outside the resend loop.
            self._seq = status.cmd_ack_seq
        return status

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
        await self._exchange(
            lambda: self.client.write_registers(self.unit, address, list(values)),
            garbled_is_fault=False,
        )

    async def _idempotent_write(self, address: int, values: Sequence[int]) -> None:
        """A plain register write (no CMD_SEQ), resent on silence until the command
        timeout: writing the same values twice is harmless."""
        with trio.move_on_after(self.command_timeout):
            while True:
                try:
                    await self._write(address, values)
                except PumpUnreachable:
                    self._resends += 1
                    await trio.sleep(self.ack_poll_s)
                else:
                    return
        raise PumpUnreachable(
            f"unit {self.unit}: write at {address} not answered within {self.command_timeout:g}s"
        )

    async def _command(self, block: CommandBlock) -> None:
        """Write, then wait for the pump to acknowledge this CMD_SEQ; resend on silence or
        on a garbled reply (the same block again is harmless if it already ran).

        A resend is preceded by a status read: the block may have run and only its reply
        been lost, and a pump that restarted meanwhile (BOOT_COUNT moved on) has forgotten
        the CMD_SEQ it acknowledged, so the same block would run again. That ends the
        command with :class:`CommandInterrupted` instead.
        """
        self._commands += 1
        frame = encode_command(block)
        boot = self._boot_count  # of the pump the command is meant for
        resend = False
        with trio.move_on_after(self.command_timeout) as scope:
            while True:
                try:
                    if resend and self._acknowledged(block, await self.status(), boot):
                        return
                    resend = True
                    await self._write(COMMAND_START, frame)
                    while True:
                        if self._acknowledged(block, await self.status(), boot):
                            return
                        await trio.sleep(self.ack_poll_s)
                except CommandInterrupted:
                    raise
                except PumpUnreachable:
                    self._resends += 1
                    await trio.sleep(self.ack_poll_s)
                except PumpFault as exc:
                    cause = exc.__cause__
                    if isinstance(cause, ModbusException) and not cause.outcome_unknown:
                        raise  # refused outright (bad address or value): no use resending
                    self._resends += 1  # garbled, or a device failure: outcome unknown
                    await trio.sleep(self.ack_poll_s)
        if scope.cancelled_caught:
            raise PumpUnreachable(
                f"unit {self.unit}: {block.code.name} (seq {block.seq}) not acknowledged "
                f"within {self.command_timeout:g}s; outcome unknown"
            )

    def _acknowledged(self, block: CommandBlock, status: StatusBlock, boot: int | None) -> bool:
        """True once the pump acknowledged ``block`` as executed; raises if it refused it,
        took its CMD_SEQ for another command's, or restarted since the command began."""
        if boot is not None and status.boot_count != boot:
            self._seq = status.cmd_ack_seq  # number on from the restarted pump's counter
            raise CommandInterrupted(
                f"unit {self.unit}: the pump restarted (boot {boot} -> {status.boot_count}) "
                f"while {block.code.name} (seq {block.seq}) was outstanding; not resent, "
                "outcome unknown"
            )
        if status.cmd_ack_seq != block.seq:
            return False
        if status.cmd_ack_code != block.code:
            raise _SeqTaken(status.cmd_ack_seq)
        if status.cmd_result is not CommandResult.OK:
            raise CommandRefused(block.code.name, status.cmd_result)
        return True

    async def _next_seq(self) -> int:
        if self._seq is None:
            self._seq = (await self.status()).cmd_ack_seq
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; never equal to the last one acked
        return self._seq

    async def _simple(self, code: Command, **args: Any) -> None:
        """One command; a BUSY result (not executed) is tried again with a new CMD_SEQ."""
        for attempt in range(self.busy_retries + 1):
            try:
                await self._command(CommandBlock(seq=await self._next_seq(), code=code, **args))
            except CommandRefused as exc:
                if exc.result is CommandResult.BUSY and attempt < self.busy_retries:
                    self._busy += 1
                    await trio.sleep(self.ack_poll_s)
                    continue
                self._refusals += 1
                raise
            except _SeqTaken as exc:
                # Another host's command carried this CMD_SEQ: the pump took ours for a
                # resend and did not run it. Number on from theirs and send ours again.
                self._collisions += 1
                self._seq = exc.ack_seq
            else:
                return
        raise PumpUnreachable(
            f"unit {self.unit}: {code.name} not executed in {self.busy_retries + 1} attempts"
        )

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
        await self._idempotent_write(PRICES_START, encode_prices(prices))
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
            "busy": self._busy,
            "collisions": self._collisions,
            "last_seq": self._seq,
        }
