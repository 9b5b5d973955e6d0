"""A pymodbus server: the independent peer of the Modbus client tests.

pymodbus's servers run on asyncio and the tests on trio, so this runs in a subprocess:

    python modbus_server.py tcp PORT
    python modbus_server.py rtu TTY BAUDRATE

It prints ``ready`` on stdout once it serves. Its units, and the values they hold, are the
constants and functions below, which the tests import to know what to expect.
"""

from __future__ import annotations

import sys
from typing import Any

UNITS = (1, 2, 3)  # ordinary units
HUNG_UNIT = 9  # takes requests and never answers them (a dead pump behind a gateway)
BUSY_UNIT = 5  # answers every register access with exception 06 (device busy)
INPUT_COUNT = 64  # input registers 0..63
HOLDING_BASE = 1000  # holding registers 1000..1031
HOLDING_COUNT = 32


GFD1_UNIT = 7  # hosts the GFD-1 register map, filled from the codec's encoders


def gfd1_image() -> tuple[Any, Any, Any]:
    """What unit GFD1_UNIT holds: a status block, per-nozzle totals and a configuration."""
    from devices.gfd1 import (
        CommandResult,
        EndReason,
        ErrorCode,
        Flag,
        FPState,
        NozzleTotals,
        PointConfig,
        PresetType,
        SaleRecord,
        SaleState,
        StatusBlock,
    )

    sale = SaleRecord(
        seq=812, nozzle=2, end_reason=EndReason.NOZZLE_HUNG_UP, volume_ml=41_250,
        amount_fen=32_175, unit_price=780_000, start_volume_total_ml=9_000_000_000,
        end_volume_total_ml=9_000_041_250, auth_token=0xA5A5A5A5,
        preset_type=PresetType.NONE, preset_value=0, price_set_id=3, state=SaleState.PAYABLE,
    )  # fmt: skip
    status = StatusBlock(
        map_version=1, fp_state=FPState.COMPLETED, flags=Flag.TOTALS_VALID, active_nozzle=0,
        nozzle_out_mask=0, error_code=ErrorCode.NONE, cur_sale_seq=812, cur_volume_ml=41_250,
        cur_amount_fen=32_175, cur_unit_price=780_000, flow_rate_ml_min=0,
        cur_auth_token=0xA5A5A5A5, cmd_ack_seq=17, cmd_result=CommandResult.OK,
        cmd_ack_code=1, heartbeat=4321, boot_count=2, unpaid_count=1, price_set_id=3,
        last_sale=sale,
    )  # fmt: skip
    totals = (NozzleTotals(5_000_000, 3_900_000), NozzleTotals(9_000_041_250, 7_020_032_175))
    config = PointConfig(nozzle_count=2, grades=(92, 95), identity="PYMODBUS-GFD1")
    return status, totals, config


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

    def gfd1_device() -> SimDevice:
        from devices.gfd1 import encode_config, encode_status, encode_totals

        status, totals, config = gfd1_image()
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=GFD1_UNIT,
            simdata=(
                bits,
                list(bits),
                [
                    SimData(1000, values=[0] * 11, datatype=DataType.REGISTERS),
                    SimData(1100, values=[0] * 16, datatype=DataType.REGISTERS),
                    SimData(1200, values=[0] * 4, datatype=DataType.REGISTERS),
                ],
                [
                    SimData(0, values=encode_status(status), datatype=DataType.REGISTERS),
                    SimData(100, values=encode_totals(totals), datatype=DataType.REGISTERS),
                    SimData(200, values=encode_config(config), datatype=DataType.REGISTERS),
                ],
            ),
        )

    devices = [device(unit) for unit in UNITS]
    devices.append(gfd1_device())
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
