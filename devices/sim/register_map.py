"""One simulated fuelling point as a Modbus register map: requests in, replies out.

Sans-IO: the servers (TCP gateway, RTU line) decode frames into
:class:`~devices.modbus.pdu.Request` values, hand them to :meth:`RegisterMap.handle` and
encode the :class:`~devices.modbus.pdu.Reply` it returns. Register values come from the
model through the GFD-1 codec (``encode_status`` and friends), so the simulator cannot
disagree with the switch about the map.

What a request may touch (anything else is exception 02, ILLEGAL_ADDRESS):

* FC 04 reads of any sub-range of one input block: IR 0-56 (status), 100-163 (totals),
  200-217 (configuration). Reserved words (IR 26-31, 209) and the totals of nozzles the
  point lacks read as 0; a read spanning two blocks is refused, as a real device does
  for a range it does not implement in full.
* FC 03 reads of any sub-range of one holding block: HR 1000-1010 (the command block as
  last written, RAM: zeros after a power cycle), 1100-1115 (staged prices), 1200-1203.
* FC 16 of the whole command block 1000-1010, executed as one command through
  :meth:`FuellingPoint.command`, which acts only when CMD_SEQ differs from CMD_ACK_SEQ
  (a resent block is a no-op). Part of the block, or FC 06 into it, is exception 02: the
  spec requires one atomic write. A refused command is still a successful write; its
  refusal is CMD_RESULT (BUSY, ILLEGAL_STATE, BAD_ARG, ...), read back with the status.
* FC 16 / FC 06 of staged prices (HR 1100+ of nozzles the point has) and of settings.
  A value the point cannot hold (price 0, MODE other than 0/1) is exception 03,
  ILLEGAL_VALUE, and nothing of that write is applied.

Exception 06 (device busy) is the servers' transport fault (``Faults.busy_reply_probability``):
they answer it without calling :meth:`handle`, so the request is not executed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devices.gfd1.codec import (
    CodecError,
    decode_prices,
    decode_settings,
    encode_config,
    encode_settings,
    encode_status,
    encode_totals,
)
from devices.gfd1.registers import (
    COMMAND_COUNT,
    COMMAND_FIELDS,
    COMMAND_START,
    CONFIG_COUNT,
    CONFIG_START,
    PRICES_COUNT,
    PRICES_START,
    SETTINGS_COUNT,
    SETTINGS_START,
    STATUS_COUNT,
    STATUS_START,
    TOTALS_COUNT,
    TOTALS_START,
)
from devices.modbus.errors import ExceptionCode
from devices.modbus.pdu import FunctionCode, Reply, Request

from .dispenser import FuellingPoint


class Refused(Exception):
    """A request the device answers with a Modbus exception."""

    def __init__(self, code: ExceptionCode, why: str) -> None:
        super().__init__(why)
        self.code = code


@dataclass(frozen=True, slots=True)
class Block:
    start: int
    count: int

    def holds(self, address: int, count: int) -> bool:
        return self.start <= address and address + count <= self.start + self.count

    def touches(self, address: int, count: int) -> bool:
        return address < self.start + self.count and self.start < address + count


STATUS = Block(STATUS_START, STATUS_COUNT)
TOTALS = Block(TOTALS_START, TOTALS_COUNT)
CONFIG = Block(CONFIG_START, CONFIG_COUNT)
COMMAND = Block(COMMAND_START, COMMAND_COUNT)
PRICES = Block(PRICES_START, PRICES_COUNT)
SETTINGS = Block(SETTINGS_START, SETTINGS_COUNT)


@dataclass(frozen=True, slots=True)
class RegisterMapStatistics:
    requests: int
    reads: int
    writes: int
    commands: int  # command blocks written (resends included)
    exceptions: dict[int, int]  # Modbus exception code -> replies


def _price_words(prices: Sequence[int]) -> list[int]:
    words = [0] * PRICES_COUNT
    for i, price in enumerate(prices):
        words[2 * i], words[2 * i + 1] = price >> 16 & 0xFFFF, price & 0xFFFF
    return words


class RegisterMap:
    """The Modbus face of one fuelling point (one unit id). See the module docstring."""

    def __init__(self, point: FuellingPoint) -> None:
        self.point = point
        self._command = [0] * COMMAND_COUNT  # HR 1000-1010 as last written
        self._boot_count = point.boot_count
        self._requests = self._reads = self._writes = self._commands = 0
        self._exceptions: Counter[int] = Counter()

    def statistics(self) -> RegisterMapStatistics:
        return RegisterMapStatistics(
            self._requests, self._reads, self._writes, self._commands, dict(self._exceptions)
        )

    def handle(self, request: Request, now_s: float) -> Reply:
        """Serve one request at model time ``now_s``: the point is advanced to it first, so
        a read shows the present, and the request counts as host activity (watchdog)."""
        point = self.point
        point.advance(max(now_s, point.now_s))
        point.host_activity()
        self._requests += 1
        try:
            if request.is_read:
                self._reads += 1
                words = self._read(request)
                return Reply(
                    request.unit, request.function, None, words, request.address, request.count
                )
            self._writes += 1
            self._write(request.address, request.values, request.function)
        except Refused as refused:
            self._exceptions[refused.code] += 1
            return Reply(request.unit, request.function, exception_code=refused.code)
        return Reply(
            request.unit,
            request.function,
            registers=request.values
            if request.function is FunctionCode.WRITE_SINGLE_REGISTER
            else (),
            address=request.address,
            count=request.count,
        )

    def refuse(self, request: Request, code: ExceptionCode) -> Reply:
        """An exception reply decided outside the map (busy): counted, nothing executed."""
        self._requests += 1
        self._exceptions[code] += 1
        return Reply(request.unit, request.function, exception_code=code)

    # -- reads ------------------------------------------------------------------------------

    def _read(self, request: Request) -> tuple[int, ...]:
        address, count = request.address, request.count
        for block, words in _READABLE[request.function]:
            if block.holds(address, count):
                offset = address - block.start
                return tuple(words(self)[offset : offset + count])
        raise Refused(ExceptionCode.ILLEGAL_ADDRESS, f"no registers at {address}..+{count}")

    def _status_words(self) -> Sequence[int]:
        return encode_status(self.point.status())

    def _totals_words(self) -> Sequence[int]:
        return encode_totals(self.point.totals())

    def _config_words(self) -> Sequence[int]:
        return encode_config(self.point.config())

    def _prices_words(self) -> Sequence[int]:
        return _price_words(self.point.staged_prices)

    def _settings_words(self) -> Sequence[int]:
        return encode_settings(self.point.settings_block())

    def _command_words(self) -> list[int]:
        if self.point.boot_count != self._boot_count:  # the block is RAM
            self._boot_count = self.point.boot_count
            self._command = [0] * COMMAND_COUNT
        return list(self._command)

    # -- writes -----------------------------------------------------------------------------

    def _write(self, address: int, values: tuple[int, ...], function: FunctionCode) -> None:
        count = len(values)
        if COMMAND.touches(address, count):
            if (address, count) != (COMMAND.start, COMMAND.count) or (
                function is not FunctionCode.WRITE_MULTIPLE_REGISTERS
            ):
                raise Refused(
                    ExceptionCode.ILLEGAL_ADDRESS, "the command block is written whole, by FC 16"
                )
            self._write_command(values)
        elif PRICES.holds(address, count):
            self._write_prices(address - PRICES.start, values)
        elif SETTINGS.holds(address, count):
            self._write_settings(address - SETTINGS.start, values)
        else:
            raise Refused(ExceptionCode.ILLEGAL_ADDRESS, f"cannot write {address}..+{count}")

    def _write_command(self, values: tuple[int, ...]) -> None:
        """Raw fields, not ``decode_command``: an unknown code or preset type is the
        device's to refuse (CMD_RESULT UNKNOWN_CMD / BAD_ARG), not a Modbus error."""
        field: dict[str, int] = {}
        for f in COMMAND_FIELDS:
            offset, word = f.address - COMMAND_START, 0
            for i in range(f.words):
                word = word << 16 | values[offset + i]
            field[f.name] = word
        self._command_words()  # drop a block from before a power cycle
        self._command = list(values)
        self._commands += 1
        self.point.command(
            field["seq"],
            field["code"],
            nozzle_mask=field["nozzle_mask"],
            preset_type=field["preset_type"],
            preset_value=field["preset_value"],
            token=field["auth_token"],
            sale_seq=field["sale_seq"],
            price_set_id=field["price_set_id"],
        )

    def _write_prices(self, offset: int, values: tuple[int, ...]) -> None:
        nozzles = self.point.spec.nozzle_count
        if offset + len(values) > 2 * nozzles:
            raise Refused(ExceptionCode.ILLEGAL_ADDRESS, f"the point has {nozzles} nozzles")
        words = _price_words(self.point.staged_prices)
        words[offset : offset + len(values)] = values
        prices = decode_prices(words[: 2 * nozzles])
        if 0 in prices:
            raise Refused(ExceptionCode.ILLEGAL_VALUE, "a price must be positive")
        for nozzle, price in enumerate(prices, start=1):
            self.point.stage_price(nozzle, price)

    def _write_settings(self, offset: int, values: tuple[int, ...]) -> None:
        words = encode_settings(self.point.settings_block())
        words[offset : offset + len(values)] = values
        try:
            new = decode_settings(words)
            self.point.configure(
                host_watchdog_s=new.host_watchdog_s,
                max_unpaid=new.max_unpaid,
                auth_timeout_s=new.auth_timeout_s,
                mode=new.mode,
            )
        except (CodecError, ValueError) as exc:
            raise Refused(ExceptionCode.ILLEGAL_VALUE, str(exc)) from None


# What each read function may read: block -> its registers now. A table built once, not
# closures per request: the simulator answers a status read per pump per second.
_READABLE: dict[FunctionCode, tuple[tuple[Block, Callable[[RegisterMap], Sequence[int]]], ...]] = {
    FunctionCode.READ_INPUT_REGISTERS: (
        (STATUS, RegisterMap._status_words),
        (TOTALS, RegisterMap._totals_words),
        (CONFIG, RegisterMap._config_words),
    ),
    FunctionCode.READ_HOLDING_REGISTERS: (
        (COMMAND, RegisterMap._command_words),
        (PRICES, RegisterMap._prices_words),
        (SETTINGS, RegisterMap._settings_words),
    ),
}
