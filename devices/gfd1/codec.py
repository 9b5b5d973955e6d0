"""Sans-IO GFD-1 codec: register lists in, typed values out, and back.

No sockets, no trio: the switch's driver decodes what its Modbus client read and encodes
what it will write; the simulator does the opposite with the same tables, so the two
sides cannot disagree about the map. Every decoder checks lengths, word ranges and enum
values and raises :class:`CodecError` for anything a correct device would not send:
a pump actor treats that as a device fault, never as a crash.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from operator import attrgetter
from typing import Any

from .layout import Layout, LayoutError
from .registers import (
    COMMAND_COUNT,
    COMMAND_FIELDS,
    COMMAND_START,
    CONFIG_COUNT,
    IDENTITY_OFFSET,
    IDENTITY_WORDS,
    MAX_NOZZLES,
    PRICES_COUNT,
    SETTINGS_COUNT,
    SETTINGS_FIELDS,
    SETTINGS_START,
    STATUS_COUNT,
    STATUS_FIELDS,
    TOTALS_COUNT,
    TOTALS_STRIDE,
    Field,
)
from .states import (
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


class CodecError(ValueError):
    """Registers that no correct GFD-1 device would produce (or a value that cannot be sent)."""


# -- words --------------------------------------------------------------------------------


def _check_words(regs: Sequence[int], count: int, what: str) -> None:
    if len(regs) != count:
        raise CodecError(f"{what}: expected {count} registers, got {len(regs)}")
    for r in regs:
        if not isinstance(r, int) or not 0 <= r <= 0xFFFF:
            raise CodecError(f"{what}: register value {r!r} is not a 16-bit word")


def _get(regs: Sequence[int], offset: int, words: int) -> int:
    value = 0
    for i in range(words):
        value = (value << 16) | regs[offset + i]
    return value


def _put(regs: list[int], offset: int, words: int, value: int, name: str) -> None:
    if not isinstance(value, int) or value < 0 or value >> (16 * words):
        raise CodecError(f"{name}={value!r} does not fit {words} register(s)")
    for i in range(words):
        regs[offset + words - 1 - i] = (value >> (16 * i)) & 0xFFFF


def _unpack(regs: Sequence[int], start: int, fields: Sequence[Field]) -> dict[str, int]:
    return {f.name: _get(regs, f.address - start, f.words) for f in fields}


def _pack(values: Mapping[str, int], start: int, count: int, fields: Sequence[Field]) -> list[int]:
    regs = [0] * count
    for f in fields:
        _put(regs, f.address - start, f.words, int(values[f.name]), f.name)
    return regs


def _enum(kind: Any, value: int, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise CodecError(f"{name}: {value} is not a valid {kind.__name__}") from None


# -- the status block (IR 0-56) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleRecord:
    """The head of the payable buffer (the oldest uncleared completed sale)."""

    seq: int
    nozzle: int
    end_reason: EndReason
    volume_ml: int
    amount_fen: int
    unit_price: int  # milli-fen per litre
    start_volume_total_ml: int
    end_volume_total_ml: int
    auth_token: int
    preset_type: PresetType
    preset_value: int
    price_set_id: int
    state: SaleState


@dataclass(frozen=True, slots=True)
class StatusBlock:
    map_version: int
    fp_state: FPState
    flags: Flag
    active_nozzle: int
    nozzle_out_mask: int
    error_code: ErrorCode
    cur_sale_seq: int
    cur_volume_ml: int
    cur_amount_fen: int
    cur_unit_price: int
    flow_rate_ml_min: int
    cur_auth_token: int
    cmd_ack_seq: int
    cmd_result: CommandResult
    cmd_ack_code: int  # the code of the command last executed; 0 before any
    heartbeat: int
    boot_count: int
    unpaid_count: int
    price_set_id: int
    last_sale: SaleRecord | None  # None when the payable buffer is empty


# Field names mirror the register map: a StatusBlock field ``x`` is register field ``x``,
# a SaleRecord field ``x`` is ``last_sale_x``. Only the enumerations need a table.
_SALE_PREFIX = "last_sale_"
_STATUS_ENUMS: dict[str, Any] = {
    "fp_state": FPState,
    "flags": Flag,
    "error_code": ErrorCode,
    "cmd_result": CommandResult,
}
_SALE_ENUMS: dict[str, Any] = {
    "end_reason": EndReason,
    "preset_type": PresetType,
    "state": SaleState,
}
_STATUS_NAMES = tuple(f.name for f in fields(StatusBlock) if f.name != "last_sale")
_SALE_NAMES = tuple(f.name for f in fields(SaleRecord))


def _members(kind: Any) -> dict[int, Any]:
    return {int(m): m for m in kind}


# Position in the status layout -> (name, value -> member) for the enumerated fields.
# Flag is an IntFlag: any combination of bits is a valid value, so it is converted as is.
_STATUS_LAYOUT = Layout(STATUS_FIELDS, 0, STATUS_COUNT)
_N_STATUS = len(_STATUS_NAMES)
_ENUM_FIELDS = {**_STATUS_ENUMS, **{_SALE_PREFIX + n: k for n, k in _SALE_ENUMS.items()}}
_ENUM_POSITIONS: tuple[tuple[int, str, Any, dict[int, Any] | None], ...] = tuple(
    (i, name, kind, None if issubclass(kind, enum.Flag) else _members(kind))
    for i, name in enumerate(_STATUS_LAYOUT.names)
    if (kind := _ENUM_FIELDS.get(name)) is not None
)
if _STATUS_LAYOUT.names != _STATUS_NAMES + tuple(_SALE_PREFIX + n for n in _SALE_NAMES):
    raise ImportError("StatusBlock and SaleRecord fields must follow the register map's order")


def decode_status(regs: Sequence[int]) -> StatusBlock:
    """One poll's status block. Runs per poll of every pump: one struct unpack (see
    :mod:`devices.gfd1.layout`) and a table lookup per enumerated field."""
    try:
        values: list[Any] = list(_STATUS_LAYOUT.unpack(regs))
    except LayoutError as exc:
        raise CodecError(f"status block: {exc}") from None
    if values[0] != 1:
        raise CodecError(f"unsupported GFD-1 map version {values[0]}")
    for i, name, kind, members in _ENUM_POSITIONS:
        if members is None:
            values[i] = kind(values[i])
        elif (member := members.get(values[i])) is not None:
            values[i] = member
        elif i < _N_STATUS or values[_N_STATUS]:  # the sale's fields count only if it is there
            raise CodecError(f"{name}: {values[i]} is not a valid {kind.__name__}")
    last = None
    if values[_N_STATUS]:  # LAST_SALE_SEQ: 0 when the payable buffer is empty
        last = SaleRecord(*values[_N_STATUS:])
        if not 1 <= last.nozzle <= MAX_NOZZLES:
            raise CodecError(f"last sale on nozzle {last.nozzle}")
        if last.end_volume_total_ml < last.start_volume_total_ml:
            raise CodecError("last sale's end volume total is below its start total")
    if values[3] > MAX_NOZZLES:  # ACTIVE_NOZZLE
        raise CodecError(f"active nozzle {values[3]}")
    values[_N_STATUS:] = [last]
    return StatusBlock(*values)


_STATUS_VALUES = attrgetter(*_STATUS_NAMES)
_SALE_VALUES = attrgetter(*_SALE_NAMES)
_NO_SALE = (0,) * len(_SALE_NAMES)  # LAST_SALE_* read as zeros when the buffer is empty


def encode_status(status: StatusBlock) -> list[int]:
    """The status block's registers. Runs for every poll the simulator answers: one
    struct pack through the layout; a value that does not fit (or is not an int) takes
    the field-by-field path, which names the field in its :class:`CodecError`."""
    sale = status.last_sale
    values = _STATUS_VALUES(status) + (_NO_SALE if sale is None else _SALE_VALUES(sale))
    try:
        return list(_STATUS_LAYOUT.pack(values))
    except LayoutError:
        return _encode_status_by_field(status)


def _encode_status_by_field(status: StatusBlock) -> list[int]:
    values: dict[str, int] = {k: int(v) for k, v in asdict(status).items() if k != "last_sale"}
    sale = status.last_sale
    for name in _SALE_NAMES:
        values[_SALE_PREFIX + name] = int(getattr(sale, name)) if sale is not None else 0
    return _pack(values, 0, STATUS_COUNT, STATUS_FIELDS)


# -- totals (IR 100-163) and configuration (IR 200-217) --------------------------------------


@dataclass(frozen=True, slots=True)
class NozzleTotals:
    """Monotonic electronic totalizers of one nozzle: never reset, the truth at the pump."""

    volume_ml: int
    amount_fen: int


def decode_totals(regs: Sequence[int], nozzles: int = MAX_NOZZLES) -> tuple[NozzleTotals, ...]:
    _check_words(regs, TOTALS_COUNT, "totals block")
    if not 1 <= nozzles <= MAX_NOZZLES:
        raise CodecError(f"nozzle count {nozzles}")
    return tuple(
        NozzleTotals(_get(regs, TOTALS_STRIDE * n, 4), _get(regs, TOTALS_STRIDE * n + 4, 4))
        for n in range(nozzles)
    )


def encode_totals(totals: Sequence[NozzleTotals]) -> list[int]:
    if len(totals) > MAX_NOZZLES:
        raise CodecError(f"{len(totals)} nozzles")
    regs = [0] * TOTALS_COUNT
    for n, t in enumerate(totals):
        _put(regs, TOTALS_STRIDE * n, 4, t.volume_ml, f"nozzle {n + 1} volume total")
        _put(regs, TOTALS_STRIDE * n + 4, 4, t.amount_fen, f"nozzle {n + 1} amount total")
    return regs


@dataclass(frozen=True, slots=True)
class PointConfig:
    nozzle_count: int
    grades: tuple[int, ...]  # grade code per nozzle, nozzle 1 first
    identity: str  # up to 16 ASCII characters


def decode_config(regs: Sequence[int]) -> PointConfig:
    _check_words(regs, CONFIG_COUNT, "configuration block")
    count = regs[0]
    if not 1 <= count <= MAX_NOZZLES:
        raise CodecError(f"nozzle count {count}")
    raw = b"".join(
        r.to_bytes(2, "big") for r in regs[IDENTITY_OFFSET : IDENTITY_OFFSET + IDENTITY_WORDS]
    )
    try:
        identity = raw.rstrip(b"\0 ").decode("ascii")
    except UnicodeDecodeError:
        raise CodecError("identity is not ASCII") from None
    return PointConfig(count, tuple(regs[1 : 1 + count]), identity)


def encode_config(config: PointConfig) -> list[int]:
    if not 1 <= config.nozzle_count <= MAX_NOZZLES or len(config.grades) != config.nozzle_count:
        raise CodecError("nozzle count and grades disagree")
    try:
        raw = config.identity.encode("ascii")
    except UnicodeEncodeError:
        raise CodecError("identity must be ASCII") from None
    if len(raw) > 2 * IDENTITY_WORDS:
        raise CodecError("identity longer than 16 characters")
    raw = raw.ljust(2 * IDENTITY_WORDS, b"\0")
    regs = [0] * CONFIG_COUNT
    regs[0] = config.nozzle_count
    for i, grade in enumerate(config.grades):
        _put(regs, 1 + i, 1, grade, f"grade of nozzle {i + 1}")
    for i in range(IDENTITY_WORDS):
        regs[IDENTITY_OFFSET + i] = int.from_bytes(raw[2 * i : 2 * i + 2], "big")
    return regs


# -- writes: command block (HR 1000-1010), staged prices, settings ---------------------------


@dataclass(frozen=True, slots=True)
class CommandBlock:
    """One command. The device executes it only if ``seq`` differs from its CMD_ACK_SEQ,
    so writing the same block twice is harmless."""

    seq: int
    code: Command
    nozzle_mask: int = 0  # 0 = all nozzles
    preset_type: PresetType = PresetType.NONE
    preset_value: int = 0
    auth_token: int = 0
    sale_seq: int = 0
    price_set_id: int = 0


def encode_command(cmd: CommandBlock) -> list[int]:
    if cmd.preset_type is PresetType.NONE and cmd.preset_value:
        raise CodecError("a preset value needs a preset type")
    values = {
        "seq": cmd.seq,
        "code": int(cmd.code),
        "nozzle_mask": cmd.nozzle_mask,
        "preset_type": int(cmd.preset_type),
        "preset_value": cmd.preset_value,
        "auth_token": cmd.auth_token,
        "sale_seq": cmd.sale_seq,
        "price_set_id": cmd.price_set_id,
    }
    return _pack(values, COMMAND_START, COMMAND_COUNT, COMMAND_FIELDS)


def decode_command(regs: Sequence[int]) -> CommandBlock:
    _check_words(regs, COMMAND_COUNT, "command block")
    v = _unpack(regs, COMMAND_START, COMMAND_FIELDS)
    return CommandBlock(
        seq=v["seq"],
        code=_enum(Command, v["code"], "command code"),
        nozzle_mask=v["nozzle_mask"],
        preset_type=_enum(PresetType, v["preset_type"], "preset type"),
        preset_value=v["preset_value"],
        auth_token=v["auth_token"],
        sale_seq=v["sale_seq"],
        price_set_id=v["price_set_id"],
    )


def encode_prices(prices: Sequence[int]) -> list[int]:
    """Staged unit prices (milli-fen per litre), nozzle 1 first; applied by APPLY_PRICES."""
    if not 1 <= len(prices) <= MAX_NOZZLES:
        raise CodecError(f"{len(prices)} prices")
    regs = [0] * PRICES_COUNT
    for i, price in enumerate(prices):
        if price <= 0:
            raise CodecError(f"price of nozzle {i + 1} must be positive")
        _put(regs, 2 * i, 2, price, f"price of nozzle {i + 1}")
    return regs[: 2 * len(prices)]


def decode_prices(regs: Sequence[int]) -> tuple[int, ...]:
    if len(regs) % 2 or not 2 <= len(regs) <= PRICES_COUNT:
        raise CodecError(f"prices block of {len(regs)} registers")
    _check_words(regs, len(regs), "prices block")
    return tuple(_get(regs, i, 2) for i in range(0, len(regs), 2))


@dataclass(frozen=True, slots=True)
class PointSettings:
    host_watchdog_s: int = 0  # 0 = off
    max_unpaid: int = 3
    auth_timeout_s: int = 120
    mode: Mode = Mode.HOST_CONTROLLED


def encode_settings(settings: PointSettings) -> list[int]:
    values = {k: int(v) for k, v in asdict(settings).items()}
    return _pack(values, SETTINGS_START, SETTINGS_COUNT, SETTINGS_FIELDS)


def decode_settings(regs: Sequence[int]) -> PointSettings:
    _check_words(regs, SETTINGS_COUNT, "settings block")
    v = _unpack(regs, SETTINGS_START, SETTINGS_FIELDS)
    return PointSettings(
        v["host_watchdog_s"], v["max_unpaid"], v["auth_timeout_s"], _enum(Mode, v["mode"], "mode")
    )
