"""Modbus TCP and RTU clients on trio, with pymodbus as the codec only.

pymodbus builds and splits frames and encodes and decodes PDUs; the I/O, the transaction
matching, the timeouts and the reconnects are this package's, on trio streams. Start at
:class:`ModbusTcpClient` (a station gateway) or :class:`ModbusRtuClient` (an RS-485 line);
both implement :class:`RegisterClient`.
"""

from .client import LinkState, ModbusStatistics, RegisterClient
from .errors import (
    ExceptionCode,
    ModbusConnectionError,
    ModbusError,
    ModbusException,
    ModbusFrameError,
    ModbusTimeout,
)
from .mbap import MbapCodec, TransactionTable
from .pdu import FunctionCode, Reply, Request
from .rtu import ModbusRtuClient
from .rtu_codec import Parity, RtuCodec, SerialSettings
from .tcp import DEFAULT_BACKOFF, ModbusTcpClient

__all__ = [
    "DEFAULT_BACKOFF",
    "ExceptionCode",
    "FunctionCode",
    "LinkState",
    "MbapCodec",
    "ModbusConnectionError",
    "ModbusError",
    "ModbusException",
    "ModbusFrameError",
    "ModbusRtuClient",
    "ModbusStatistics",
    "ModbusTcpClient",
    "ModbusTimeout",
    "Parity",
    "RegisterClient",
    "Reply",
    "Request",
    "RtuCodec",
    "SerialSettings",
    "TransactionTable",
]
