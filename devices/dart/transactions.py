"""DART transactions, sans-IO: the typed contents of DATA blocks, both directions.

A DATA block carries one or more transactions, each ``TRANS LNG DATA``; LNG is always
present, so a transaction this subset does not know is skipped by its length (and
reported as :class:`Unknown`) instead of failing the block. Values are packed BCD, most
significant digit first, with the decimals fixed by the pump's configuration; the
switch's integer units (mL, fen, milli-fen per litre) are converted here, exactly, by
:class:`Decimals`. Anything malformed raises :class:`DartCodecError`, which the line
master turns into a NAK or a fault, never a crash.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


class DartCodecError(ValueError):
    """A transaction that cannot be decoded or encoded."""


# -- BCD ---------------------------------------------------------------------------------


def bcd_encode(value: int, nbytes: int) -> bytes:
    if value < 0 or value >= 10 ** (2 * nbytes):
        raise DartCodecError(f"{value} does not fit {nbytes} BCD bytes")
    digits = f"{value:0{2 * nbytes}d}"
    return bytes(int(digits[i]) << 4 | int(digits[i + 1]) for i in range(0, len(digits), 2))


def bcd_decode(raw: bytes) -> int:
    value = 0
    for byte in raw:
        high, low = byte >> 4, byte & 0xF
        if high > 9 or low > 9:
            raise DartCodecError(f"{raw.hex(' ')} is not packed BCD")
        value = value * 100 + high * 10 + low
    return value


_P10: Final[tuple[int, ...]] = (1, 10, 100, 1000, 10_000, 100_000)


@dataclass(frozen=True, slots=True)
class Decimals:
    """The pump's decimal places: volume in litres, amounts in yuan, unit price in yuan
    per litre. Conversions to and from the switch's integer units are exact, and a value
    the pump cannot show exactly is refused rather than rounded."""

    volume: int = 2
    amount: int = 2
    price: int = 2

    def __post_init__(self) -> None:
        if not (0 <= self.volume <= 3 and 0 <= self.amount <= 2 and 0 <= self.price <= 5):
            raise DartCodecError(f"unsupported decimals {self}")

    def to_ml(self, value: int) -> int:
        return value * _P10[3 - self.volume]

    def to_fen(self, value: int) -> int:
        return value * _P10[2 - self.amount]

    def to_price(self, value: int) -> int:
        """Pump price -> milli-fen per litre."""
        return value * _P10[5 - self.price]

    def from_ml(self, ml: int) -> int:
        return _exact(ml, _P10[3 - self.volume], "volume (mL)")

    def from_fen(self, fen: int) -> int:
        return _exact(fen, _P10[2 - self.amount], "amount (fen)")

    def from_price(self, milli_fen_per_l: int) -> int:
        return _exact(milli_fen_per_l, _P10[5 - self.price], "price (milli-fen/L)")


def _exact(value: int, unit: int, what: str) -> int:
    whole, rest = divmod(value, unit)
    if rest or value < 0:
        raise DartCodecError(f"{what} {value} is not a whole number of the pump's units")
    return whole


# -- controller -> pump --------------------------------------------------------------------


class CD1(enum.IntEnum):
    RETURN_STATUS = 0x00
    RETURN_FILLING_INFO = 0x04
    RESET = 0x05
    AUTHORIZE = 0x06
    STOP = 0x08
    SWITCH_OFF = 0x0A
    SUSPEND = 0x0D
    RESUME = 0x0E


@dataclass(frozen=True, slots=True)
class Command:  # CD1
    code: CD1


@dataclass(frozen=True, slots=True)
class AllowedNozzles:  # CD2
    nozzles: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PresetVolume:  # CD3, in the pump's volume units
    value: int


@dataclass(frozen=True, slots=True)
class PresetAmount:  # CD4, in the pump's amount units
    value: int


@dataclass(frozen=True, slots=True)
class Prices:  # CD5, one per nozzle, nozzle 1 first, in the pump's price units
    prices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TotalsRequest:  # CD101
    counter: int  # 0x01-0x09 volume counter of nozzle n, 0x11-0x19 amount counter


# -- pump -> controller ------------------------------------------------------------------


class DC1(enum.IntEnum):
    NOT_PROGRAMMED = 0
    RESET = 1
    AUTHORIZED = 2
    FILLING = 4
    FILLING_COMPLETED = 5
    PRESET_REACHED = 6
    SWITCHED_OFF = 7
    SUSPENDED = 8


@dataclass(frozen=True, slots=True)
class Status:  # DC1
    status: DC1


@dataclass(frozen=True, slots=True)
class Filling:  # DC2, in the pump's units
    volume: int
    amount: int


@dataclass(frozen=True, slots=True)
class NozzlePrice:  # DC3
    price: int
    nozzle: int  # 0 = none selected
    nozzle_out: bool


@dataclass(frozen=True, slots=True)
class Alarm:  # DC5
    code: int


@dataclass(frozen=True, slots=True)
class Totals:  # DC101; the short form has no amount or second total
    counter: int
    volume_total: int
    amount_total: int | None = None
    second_total: int | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A transaction this subset does not know, skipped by its length."""

    trans: int
    data: bytes


Transaction = (
    Command
    | AllowedNozzles
    | PresetVolume
    | PresetAmount
    | Prices
    | TotalsRequest
    | Status
    | Filling
    | NozzlePrice
    | Alarm
    | Totals
    | Unknown
)

# Transaction numbers are reused in the two directions (0x01 is CD1 and DC1): which table
# applies depends on who sent the block.
TO_PUMP: Final = {1: "CD1", 2: "CD2", 3: "CD3", 4: "CD4", 5: "CD5", 0x65: "CD101"}
FROM_PUMP: Final = {1: "DC1", 2: "DC2", 3: "DC3", 5: "DC5", 0x65: "DC101"}


def _item(trans: int, body: bytes) -> bytes:
    if len(body) > 0xFF:
        raise DartCodecError(f"transaction {trans:#04x} longer than 255 bytes")
    return bytes([trans, len(body)]) + body


def encode_transaction(t: Transaction) -> bytes:
    match t:
        case Command(code):
            return _item(0x01, bytes([code]))
        case AllowedNozzles(nozzles):
            if not nozzles or any(not 1 <= n <= 9 for n in nozzles):
                raise DartCodecError(f"allowed nozzles {nozzles}")
            return _item(0x02, bytes(nozzles))
        case PresetVolume(value):
            return _item(0x03, bcd_encode(value, 4))
        case PresetAmount(value):
            return _item(0x04, bcd_encode(value, 4))
        case Prices(prices):
            if not 1 <= len(prices) <= 9:
                raise DartCodecError(f"{len(prices)} prices")
            return _item(0x05, b"".join(bcd_encode(p, 3) for p in prices))
        case TotalsRequest(counter):
            if counter not in COUNTERS:
                raise DartCodecError(f"totals counter {counter:#04x}")
            return _item(0x65, bytes([counter]))
        case Status(status):
            return _item(0x01, bytes([status]))
        case Filling(volume, amount):
            return _item(0x02, bcd_encode(volume, 4) + bcd_encode(amount, 4))
        case NozzlePrice(price, nozzle, out):
            if not 0 <= nozzle <= 0xF:
                raise DartCodecError(f"nozzle {nozzle}")
            return _item(0x03, bcd_encode(price, 3) + bytes([nozzle | (0x10 if out else 0)]))
        case Alarm(code):
            return _item(0x05, bytes([code]))
        case Totals(counter, volume, amount, second):
            body = bytes([counter]) + bcd_encode(volume, 5)
            if amount is not None:
                body += bcd_encode(amount, 5) + bcd_encode(second or 0, 5)
            return _item(0x65, body)
        case Unknown(trans, body):
            return _item(trans, body)
    raise DartCodecError(f"not a transaction: {t!r}")  # pragma: no cover


def encode_block(transactions: Sequence[Transaction]) -> bytes:
    if not transactions:
        raise DartCodecError("a DATA block carries at least one transaction")
    return b"".join(encode_transaction(t) for t in transactions)


COUNTERS: Final = frozenset([*range(0x01, 0x0A), *range(0x11, 0x1A)])


def _split(block: bytes) -> list[tuple[int, bytes]]:
    items, i = [], 0
    while i < len(block):
        if i + 2 > len(block):
            raise DartCodecError(f"transaction header cut short at byte {i}")
        trans, length = block[i], block[i + 1]
        body = block[i + 2 : i + 2 + length]
        if len(body) != length:
            raise DartCodecError(f"transaction {trans:#04x}: LNG {length}, {len(body)} bytes left")
        items.append((trans, body))
        i += 2 + length
    if not items:
        raise DartCodecError("empty DATA block")
    return items


def _need(trans: int, body: bytes, sizes: tuple[int, ...]) -> None:
    if len(body) not in sizes:
        raise DartCodecError(f"transaction {trans:#04x}: {len(body)} data bytes")


def decode_from_pump(block: bytes) -> list[Transaction]:
    """A pump's DATA block (DC transactions)."""
    out: list[Transaction] = []
    for trans, body in _split(block):
        if trans == 0x01:
            _need(trans, body, (1,))
            try:
                out.append(Status(DC1(body[0])))
            except ValueError:
                raise DartCodecError(f"DC1 status {body[0]}") from None
        elif trans == 0x02:
            _need(trans, body, (8,))
            out.append(Filling(bcd_decode(body[:4]), bcd_decode(body[4:])))
        elif trans == 0x03:
            _need(trans, body, (4,))
            out.append(NozzlePrice(bcd_decode(body[:3]), body[3] & 0x0F, bool(body[3] & 0x10)))
        elif trans == 0x05:
            _need(trans, body, (1,))
            out.append(Alarm(body[0]))
        elif trans == 0x65:
            _need(trans, body, (6, 16))
            if body[0] not in COUNTERS:
                raise DartCodecError(f"DC101 counter {body[0]:#04x}")
            if len(body) == 6:
                out.append(Totals(body[0], bcd_decode(body[1:6])))
            else:
                out.append(
                    Totals(
                        body[0],
                        bcd_decode(body[1:6]),
                        bcd_decode(body[6:11]),
                        bcd_decode(body[11:16]),
                    )
                )
        else:
            out.append(Unknown(trans, body))
    return out


def decode_to_pump(block: bytes) -> list[Transaction]:
    """A controller's DATA block (CD transactions): the simulated pump's side."""
    out: list[Transaction] = []
    for trans, body in _split(block):
        if trans == 0x01:
            _need(trans, body, (1,))
            try:
                out.append(Command(CD1(body[0])))
            except ValueError:
                raise DartCodecError(f"CD1 command {body[0]:#04x}") from None
        elif trans == 0x02:
            if not 1 <= len(body) <= 9 or any(not 1 <= n <= 9 for n in body):
                raise DartCodecError(f"CD2 allowed nozzles {body.hex(' ')}")
            out.append(AllowedNozzles(tuple(body)))
        elif trans in (0x03, 0x04):
            _need(trans, body, (4,))
            value = bcd_decode(body)
            out.append(PresetVolume(value) if trans == 0x03 else PresetAmount(value))
        elif trans == 0x05:
            if not body or len(body) % 3 or len(body) > 27:
                raise DartCodecError(f"CD5 with {len(body)} bytes")
            out.append(Prices(tuple(bcd_decode(body[i : i + 3]) for i in range(0, len(body), 3))))
        elif trans == 0x65:
            _need(trans, body, (1,))
            if body[0] not in COUNTERS:
                raise DartCodecError(f"CD101 counter {body[0]:#04x}")
            out.append(TotalsRequest(body[0]))
        else:
            out.append(Unknown(trans, body))
    return out
