"""GFD-1 enumerations: fuelling-point states (IFSF numbering), flags, commands, results.

The wire values are the spec's (``../shared/specs/gfd1-modbus.md``); both the switch's
codec and the dispenser simulator use these, so the two can never drift apart.
"""

from __future__ import annotations

import enum


class FPState(enum.IntEnum):
    INOPERATIVE = 1
    CLOSED = 2
    IDLE = 3
    CALLING = 4
    AUTHORIZED = 5
    STARTED = 6
    SUSPENDED_STARTED = 7
    FUELLING = 8
    SUSPENDED_FUELLING = 9
    COMPLETED = 10


class Flag(enum.IntFlag):
    NOZZLE_OUT = 1 << 0
    FLOW = 1 << 1
    PRESET_ACTIVE = 1 << 2
    SUSPENDED = 1 << 3
    ERROR = 1 << 4
    STAND_ALONE = 1 << 5
    TOTALS_VALID = 1 << 6
    UNPAID_BUFFER_FULL = 1 << 7
    PRICE_CHANGE_PENDING = 1 << 8


class ErrorCode(enum.IntEnum):
    NONE = 0
    PULSER = 1
    EMERGENCY_STOP = 2
    POWER_FAIL = 3
    LEAK = 4
    HOST_WATCHDOG = 5


class Command(enum.IntEnum):
    AUTHORIZE = 1
    STOP = 2
    SUSPEND = 3
    RESUME = 4
    LOCK_SALE = 5
    CLEAR_SALE = 6
    OPEN = 7
    CLOSE = 8
    RESET_ERROR = 9
    APPLY_PRICES = 10
    EMERGENCY_STOP = 11
    CANCEL_AUTH = 12


class CommandResult(enum.IntEnum):
    OK = 0
    BUSY = 1
    ILLEGAL_STATE = 2
    BAD_ARG = 3
    BUFFER_FULL = 4
    UNKNOWN_CMD = 5


class PresetType(enum.IntEnum):
    NONE = 0
    VOLUME = 1
    AMOUNT = 2


class EndReason(enum.IntEnum):
    NOZZLE_HUNG_UP = 1
    PRESET_REACHED = 2
    HOST_STOP = 3
    ERROR = 4
    POWER_LOSS = 5
    NO_FLOW_TIMEOUT = 6  # a zero sale


class SaleState(enum.IntEnum):
    NONE = 0
    PAYABLE = 2
    LOCKED = 3


class Mode(enum.IntEnum):
    HOST_CONTROLLED = 0
    STAND_ALONE = 1
