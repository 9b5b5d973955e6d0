"""A pymodbus server: the independent peer of the Modbus client tests.

pymodbus's servers run on asyncio and the tests on trio, so this runs in a subprocess:

    python modbus_server.py tcp PORT
    python modbus_server.py rtu TTY BAUDRATE

It prints ``ready`` on stdout once it serves. Its units, and the values they hold, are the
constants and functions below, which the tests import to know what to expect.
"""

from __future__ import annotations

import sys

UNITS = (1, 2, 3)  # ordinary units
HUNG_UNIT = 9  # takes requests and never answers them (a dead pump behind a gateway)
BUSY_UNIT = 5  # answers every register access with exception 06 (device busy)
INPUT_COUNT = 64  # input registers 0..63
HOLDING_BASE = 1000  # holding registers 1000..1031
HOLDING_COUNT = 32


def input_value(unit: int, address: int) -> int:
    return unit * 1000 + address


def holding_value(unit: int, address: int) -> int:
    return unit * 100 + address - HOLDING_BASE


async def _serve(argv: list[str]) -> None:
    import asyncio

    from pymodbus.constants import ExcCodes
    from pymodbus.server import ModbusSerialServer, ModbusTcpServer
    from pymodbus.server.base import ModbusBaseServer
    from pymodbus.simulator import DataType, SimAction, SimData, SimDevice

    async def hang(*_args: object) -> ExcCodes | None:
        await asyncio.sleep(3600)
        return None

    async def busy(*_args: object) -> ExcCodes | None:
        return ExcCodes.DEVICE_BUSY

    def device(unit: int, action: SimAction | None = None) -> SimDevice:
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        holding = [holding_value(unit, HOLDING_BASE + i) for i in range(HOLDING_COUNT)]
        inputs = [input_value(unit, i) for i in range(INPUT_COUNT)]
        return SimDevice(
            id=unit,
            simdata=(
                bits,
                list(bits),
                [SimData(HOLDING_BASE, values=holding, datatype=DataType.REGISTERS)],
                [SimData(0, values=inputs, datatype=DataType.REGISTERS)],
            ),
            action=action,
        )

    devices = [device(unit) for unit in UNITS]
    devices += [device(HUNG_UNIT, hang), device(BUSY_UNIT, busy)]
    server: ModbusBaseServer
    if argv[0] == "tcp":
        server = ModbusTcpServer(devices, address=("127.0.0.1", int(argv[1])))
    else:
        server = ModbusSerialServer(devices, port=argv[1], baudrate=int(argv[2]), parity="N")
    await server.serve_forever(background=True)
    print("ready", flush=True)
    await server.serving


def main() -> None:
    import asyncio

    asyncio.run(_serve(sys.argv[1:]))


if __name__ == "__main__":
    main()
