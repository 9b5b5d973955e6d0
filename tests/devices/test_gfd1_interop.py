"""The switch's GFD-1 driver against pymodbus's own server hosting the GFD-1 map.

An independent Modbus peer: if our client, framing or codec disagreed with pymodbus about
the wire, these reads and writes would not come back as the values the server was given.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devices.gfd1 import (
    COMMAND_COUNT,
    COMMAND_START,
    Command,
    CommandBlock,
    PresetType,
    decode_command,
    encode_command,
)
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from tests.devices.modbus_server import GFD1_UNIT, gfd1_image
from tests.devices.modbus_support import ServerProcess, free_port


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    server = ServerProcess("tcp", str(port))
    server.start()
    yield port
    server.stop()


async def test_the_driver_reads_the_gfd1_map_from_a_pymodbus_server(port: int) -> None:
    status, totals, config = gfd1_image()
    async with ModbusTcpClient("127.0.0.1", port, timeout=2.0, max_in_flight=1) as client:
        driver = Gfd1Driver(client, GFD1_UNIT, nozzles=2)
        assert await driver.config() == config
        assert await driver.status() == status
        assert await driver.totals() == totals


async def test_a_command_block_written_by_the_switch_reads_back_from_pymodbus(port: int) -> None:
    block = CommandBlock(
        seq=18,
        code=Command.AUTHORIZE,
        nozzle_mask=2,
        preset_type=PresetType.AMOUNT,
        preset_value=20_000,
        auth_token=0xCAFEF00D,
        price_set_id=3,
    )
    async with ModbusTcpClient("127.0.0.1", port, timeout=2.0, max_in_flight=1) as client:
        await client.write_registers(GFD1_UNIT, COMMAND_START, encode_command(block))
        regs = await client.read_holding_registers(GFD1_UNIT, COMMAND_START, COMMAND_COUNT)
    assert decode_command(regs) == block
