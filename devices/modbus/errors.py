"""The Modbus clients' typed errors.

Callers branch on these, so each names one situation, and each says whether the request's
outcome is known. Invariant 3 of the architecture ("unknown is not failed") depends on that:
a pump command whose reply timed out may have been executed, so the PumpActor must read the
pump before it sends anything again, whereas a Modbus exception reply means the device saw
the request and refused it.

pymodbus, pyserial and ``OSError`` exceptions never leave this package: the clients map them
to these at the boundary.
"""

from __future__ import annotations

import enum


class ExceptionCode(enum.IntEnum):
    """Modbus exception codes (Modbus Application Protocol v1.1b3, section 7)."""

    ILLEGAL_FUNCTION = 0x01
    ILLEGAL_ADDRESS = 0x02
    ILLEGAL_VALUE = 0x03
    DEVICE_FAILURE = 0x04
    ACKNOWLEDGE = 0x05
    DEVICE_BUSY = 0x06
    NEGATIVE_ACKNOWLEDGE = 0x07
    MEMORY_PARITY_ERROR = 0x08
    GATEWAY_PATH_UNAVAILABLE = 0x0A
    GATEWAY_TARGET_NO_RESPONSE = 0x0B


# A device that failed mid-action, or a gateway whose target did not answer, may still have
# executed the request: those exception replies leave the outcome unknown.
_UNKNOWN_OUTCOME_CODES = frozenset(
    {ExceptionCode.DEVICE_FAILURE, ExceptionCode.GATEWAY_TARGET_NO_RESPONSE}
)


class ModbusError(Exception):
    """Base of every error the Modbus clients raise.

    ``outcome_unknown`` is true when the device may have executed the request: read the
    device's state before retrying a write.
    """

    outcome_unknown: bool = False


class ModbusTimeout(ModbusError):
    """No reply within the request's timeout. The request was sent: the outcome is unknown."""

    outcome_unknown = True

    def __init__(self, unit: int, function_code: int, timeout: float) -> None:
        super().__init__(f"unit {unit}: no reply to function {function_code} within {timeout:g}s")
        self.unit = unit
        self.function_code = function_code
        self.timeout = timeout


class ModbusException(ModbusError):
    """The device answered with a Modbus exception reply (02 bad address, 03 bad value, 06 busy)."""

    def __init__(self, unit: int, function_code: int, exception_code: int) -> None:
        known = exception_code in ExceptionCode._value2member_map_
        code = ExceptionCode(exception_code) if known else exception_code
        name = code.name if isinstance(code, ExceptionCode) else "unknown"
        super().__init__(
            f"unit {unit}: function {function_code} refused with exception "
            f"{exception_code:02X} ({name})"
        )
        self.unit = unit
        self.function_code = function_code
        self.exception_code: ExceptionCode | int = code
        self.outcome_unknown = code in _UNKNOWN_OUTCOME_CODES


class ModbusConnectionError(ModbusError):
    """The link is down: could not connect or open the port, or it was lost.

    A request that fails before it was written is not executed (``outcome_unknown`` false);
    one that was already written when the link dropped may have been.
    """

    def __init__(self, message: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


class ModbusFrameError(ModbusError):
    """A reply that cannot be used: bad CRC, unparseable, or not an answer to the request.

    Raised to the request whose reply it was (when that can be told); garbage that belongs to
    no request is only counted. Never fatal to the connection. The device may have acted on
    the request, so the outcome is unknown.
    """

    outcome_unknown = True
