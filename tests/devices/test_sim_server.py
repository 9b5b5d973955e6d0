"""``fuelswitch sim pumps`` as a real process, driven over real sockets and ptys.

One simulator serves the module (two TCP stations of eight 2-nozzle pumps and an RTU
station on a pty, its clock five times faster than real time so sales are short); each
test uses pumps of its own. The state-file tests start processes of their own. Nothing
here measures time: waits are bounded polls for states the pump must reach.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from actors import Backoff
from devices.gfd1 import (
    COMMAND_START,
    PRICES_START,
    SETTINGS_START,
    STATUS_COUNT,
    Command,
    CommandBlock,
    CommandResult,
    EndReason,
    FPState,
    PresetType,
    StatusBlock,
    decode_status,
    encode_command,
)
from devices.modbus import (
    ExceptionCode,
    ModbusException,
    ModbusFrameError,
    ModbusRtuClient,
    ModbusTcpClient,
    ModbusTimeout,
    Parity,
)
from tests.devices.modbus_support import mbap, open_pty, relay
from tests.devices.sim_support import (
    SAFE,
    Control,
    SimProcess,
    close_fds,
    poll_status,
    read_status,
    read_totals,
    send_command,
    wait_for,
)

FAST = Backoff(min_delay=0.02, max_delay=0.2, jitter=0.0, reset_after=60.0)
RTU_STATION = 2


@pytest.fixture(scope="module")
def rtu_ptys() -> Iterator[tuple[int, int, str, str]]:
    """Two pty pairs: the simulator's line and the client's; a per-test relay joins them."""
    sim_master, sim_slave, sim_path = open_pty()
    client_master, client_slave, client_path = open_pty()
    yield sim_master, client_master, sim_path, client_path
    close_fds(sim_master, sim_slave, client_master, client_slave)


@pytest.fixture(scope="module")
def sim(rtu_ptys: tuple[int, int, str, str]) -> Iterator[SimProcess]:
    args = ("--stations", "2", "--pumps-per-station", "8", "--control-port", "0")
    process = SimProcess(*args, "--rtu", rtu_ptys[2], "--speed", "5", "--seed", "7")
    process.start()
    yield process
    status = process.terminate()
    assert status == 0, process.stderr()


@pytest.fixture
async def control(sim: SimProcess) -> AsyncIterator[Control]:
    connection = await Control.connect(sim.control_port)
    yield connection
    await connection.aclose()


@pytest.fixture
async def client(sim: SimProcess) -> AsyncIterator[ModbusTcpClient]:
    async with ModbusTcpClient("127.0.0.1", sim.port(0), timeout=SAFE, backoff=FAST) as c:
        yield c


def authorize(
    seq: int,
    *,
    preset_type: PresetType = PresetType.NONE,
    preset_value: int = 0,
    auth_token: int = 0,
    nozzle_mask: int = 0,
) -> CommandBlock:
    return CommandBlock(
        seq,
        Command.AUTHORIZE,
        nozzle_mask=nozzle_mask,
        preset_type=preset_type,
        preset_value=preset_value,
        auth_token=auth_token,
    )


# -- pymodbus, the independent client ---------------------------------------------------------


def _pymodbus_authorize(port: int, unit: int) -> tuple[StatusBlock, StatusBlock]:
    """In a thread, with asyncio: pymodbus's own client reads, authorizes, reads again."""
    from pymodbus.client import AsyncModbusTcpClient

    async def main() -> tuple[StatusBlock, StatusBlock]:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=SAFE)
        assert await client.connect()
        try:
            before = await client.read_input_registers(0, count=STATUS_COUNT, device_id=unit)
            block = encode_command(authorize(1, auth_token=4711))
            written = await client.write_registers(COMMAND_START, block, device_id=unit)
            assert not written.isError()
            after = await client.read_input_registers(0, count=STATUS_COUNT, device_id=unit)
        finally:
            client.close()
        return decode_status(before.registers), decode_status(after.registers)

    return asyncio.run(main())


async def test_pymodbus_client_reads_status_and_authorizes(sim: SimProcess) -> None:
    before, after = await trio.to_thread.run_sync(_pymodbus_authorize, sim.port(0), 1)
    assert before.fp_state is FPState.IDLE and before.map_version == 1
    assert after.fp_state is FPState.AUTHORIZED
    assert (after.cmd_ack_seq, after.cmd_result, after.cur_auth_token) == (
        1,
        CommandResult.OK,
        4711,
    )
    assert after.cur_sale_seq == before.cur_sale_seq + 1


# -- a whole sale with the project's client ---------------------------------------------------


async def test_full_sale_with_a_volume_preset(client: ModbusTcpClient, control: Control) -> None:
    unit = 2
    start = await read_totals(client, unit)
    await control.call("lift", station=0, pump=unit, nozzle=1)
    assert (await read_status(client, unit)).fp_state is FPState.CALLING
    block = authorize(1, preset_type=PresetType.VOLUME, preset_value=2_000, auth_token=0xC0FFEE)
    await send_command(client, unit, block)
    status = await read_status(client, unit)
    assert (status.cmd_ack_seq, status.cmd_result) == (1, CommandResult.OK)
    sale_seq = status.cur_sale_seq
    await send_command(client, unit, block)  # resent (the reply was lost, say): a no-op
    assert (await read_status(client, unit)).cur_sale_seq == sale_seq

    seen: set[int] = set()
    done = await wait_for(client, unit, FPState.COMPLETED, seen=seen)
    assert FPState.FUELLING in seen
    sale = done.last_sale
    assert sale is not None and done.unpaid_count == 1
    assert (sale.seq, sale.nozzle, sale.volume_ml) == (sale_seq, 1, 2_000)
    assert (sale.end_reason, sale.auth_token) == (EndReason.PRESET_REACHED, 0xC0FFEE)
    end = await read_totals(client, unit)
    assert end[0].volume_ml - start[0].volume_ml == 2_000
    assert end[0].amount_fen - start[0].amount_fen == sale.amount_fen
    assert (sale.start_volume_total_ml, sale.end_volume_total_ml) == (
        start[0].volume_ml,
        end[0].volume_ml,
    )
    assert end[1] == start[1]

    await send_command(client, unit, block)  # still a no-op after the sale
    assert (await read_status(client, unit)).cur_sale_seq == sale_seq
    await send_command(client, unit, CommandBlock(2, Command.CLEAR_SALE, sale_seq=sale.seq))
    cleared = await read_status(client, unit)
    assert (cleared.cmd_ack_seq, cleared.cmd_result) == (2, CommandResult.OK)
    assert cleared.last_sale is None and cleared.unpaid_count == 0
    assert cleared.fp_state is FPState.CALLING  # the nozzle is still out
    await control.call("hang_up", station=0, pump=unit)
    assert (await read_status(client, unit)).fp_state is FPState.IDLE

    ledger = (await control.call("ledger", station=0, pump=unit))["sales"]
    assert [(s["seq"], s["volume_ml"], s["auth_token"]) for s in ledger] == [
        (sale.seq, 2_000, 0xC0FFEE)
    ]


@pytest.mark.parametrize(("unit", "lose"), [(3, False), (4, True)])
async def test_power_cycle_mid_sale(
    client: ModbusTcpClient, control: Control, unit: int, lose: bool
) -> None:
    start = await read_totals(client, unit)
    await control.call("lift", station=0, pump=unit, nozzle=2)
    await send_command(client, unit, authorize(1, auth_token=99))
    fuelling = await poll_status(client, unit, lambda s: s.cur_volume_ml > 100)
    assert fuelling.fp_state is FPState.FUELLING
    reply = await control.call("power_cycle", station=0, pump=unit, lose_in_progress=lose)
    assert reply["boot_count"] == fuelling.boot_count + 1
    status = await read_status(client, unit)
    moved = (await read_totals(client, unit))[1].volume_ml - start[1].volume_ml
    assert status.boot_count == fuelling.boot_count + 1 and moved > 0
    assert (status.cmd_ack_seq, status.cur_auth_token) == (0, 0)  # RAM is gone
    ledger = (await control.call("ledger", station=0, pump=unit))["sales"]
    assert [(s["end_reason"], s["volume_ml"]) for s in ledger] == [(EndReason.POWER_LOSS, moved)]
    if lose:  # only the totals know: the switch must reconstruct the sale from them
        assert status.last_sale is None and status.fp_state is FPState.CALLING
        assert ledger[0]["state"] == 0
    else:
        assert status.fp_state is FPState.COMPLETED and status.last_sale is not None
        assert status.last_sale.end_reason is EndReason.POWER_LOSS
        assert (status.last_sale.volume_ml, status.last_sale.auth_token) == (moved, 99)


# -- transport faults -----------------------------------------------------------------------


async def test_dropped_reply_times_out_but_the_command_executed(
    client: ModbusTcpClient, control: Control
) -> None:
    unit = 5
    await control.call("faults", station=0, pump=unit, drop_reply_probability=1.0)
    with pytest.raises(ModbusTimeout) as lost:
        await send_command(client, unit, authorize(1), timeout=0.3)
    assert lost.value.outcome_unknown
    await control.call("faults", station=0, pump=unit, drop_reply_probability=0.0)
    status = await read_status(client, unit)  # unknown is not failed: it did execute
    assert (status.fp_state, status.cmd_ack_seq) == (FPState.AUTHORIZED, 1)
    snapshot = await control.call("snapshot", station=0, pump=unit)
    assert snapshot["statistics"]["dropped"] == 1


async def test_delayed_reply_arrives_late_and_is_recognised(
    client: ModbusTcpClient, control: Control
) -> None:
    unit = 6
    await control.call(
        "faults", station=0, pump=unit, delay_reply_probability=1.0, delay_reply_s=0.5
    )
    with pytest.raises(ModbusTimeout):
        await client.read_input_registers(unit, 0, 1, timeout=0.05)
    # in order: this reply comes after the late one, which the client then drops as late
    assert await client.read_input_registers(unit, 0, 1, timeout=SAFE) == [1]
    await control.call("faults", station=0, pump=unit, delay_reply_probability=0.0)
    assert client.statistics().late_responses == 1
    snapshot = await control.call("snapshot", station=0, pump=unit)
    assert snapshot["statistics"]["delayed"] == 2


async def test_busy_fault_answers_exception_06_without_executing(
    client: ModbusTcpClient, control: Control
) -> None:
    unit = 7
    await control.call("faults", station=0, pump=unit, busy_reply_probability=1.0)
    with pytest.raises(ModbusException) as busy:
        await send_command(client, unit, authorize(1))
    assert busy.value.exception_code is ExceptionCode.DEVICE_BUSY
    await control.call("faults", station=0, pump=unit, busy_reply_probability=0.0)
    status = await read_status(client, unit)
    assert (status.fp_state, status.cmd_ack_seq) == (FPState.IDLE, 0)


async def test_garbage_and_pipelined_frames_on_one_connection(
    sim: SimProcess, control: Control
) -> None:
    read = bytes([0x04, 0x00, 0x00, 0x00, 0x02])  # FC04, IR 0, 2 registers
    async with await trio.open_tcp_stream("127.0.0.1", sim.port(1)) as stream:
        await stream.send_all(b"\xde\xad\xbe\xef" * 8 + mbap(1, 1, read))
        await stream.send_all(b"".join(mbap(tid, tid, read) for tid in (2, 3, 9)))
        await stream.send_all(mbap(4, 1, bytes([0x2B, 0x0E, 0x01, 0x00])))  # not ours: 01
        await stream.send_all(mbap(5, 1, bytes([0x03, 0x03, 0xE8, 0x00, 0x00])))  # 0 regs: 03
        expected = [mbap(tid, tid, bytes([0x04, 4, 0, 1, 0, 3])) for tid in (1, 2, 3)]
        expected.append(mbap(9, 9, bytes([0x84, 0x0B])))  # no pump 9: the gateway says so
        expected.append(mbap(4, 1, bytes([0xAB, 0x01])))
        expected.append(mbap(5, 1, bytes([0x83, 0x03])))
        want = b"".join(expected)
        received = b""
        with trio.fail_after(SAFE):
            while len(received) < len(want):
                received += await stream.receive_some(4096)
    assert received == want
    stats = (await control.call("statistics"))["gateways"][1]
    assert stats["garbage_runs"] == 1 and stats["unknown_units"] == 1


async def test_rtu_crc_error_then_recovery(
    sim: SimProcess, control: Control, rtu_ptys: tuple[int, int, str, str], nursery: trio.Nursery
) -> None:
    sim_master, client_master, _, client_path = rtu_ptys
    nursery.start_soon(relay, sim_master, client_master)
    nursery.start_soon(relay, client_master, sim_master)
    assert sim.ready["rtu"]["station"] == RTU_STATION
    async with ModbusRtuClient(client_path, 115200, parity=Parity.NONE, timeout=2.0) as rtu:
        assert (await read_status(rtu, 1)).fp_state is FPState.IDLE
        await control.call("faults", station=RTU_STATION, pump=1, crc_error_probability=1.0)
        with pytest.raises(ModbusFrameError):
            await rtu.read_input_registers(1, 0, 1)
        await control.call("faults", station=RTU_STATION, pump=1, crc_error_probability=0.0)
        assert await rtu.read_input_registers(1, 0, 2) == [1, FPState.IDLE]
        await send_command(rtu, 2, authorize(1, nozzle_mask=2))
        assert (await read_status(rtu, 2)).fp_state is FPState.AUTHORIZED
        with pytest.raises(ModbusTimeout):  # a unit that is not on the line: silence
            await rtu.read_input_registers(9, 0, 1, timeout=0.2)
        stats = rtu.statistics()
    assert (stats.frame_errors, stats.timeouts) == (1, 1)


# -- bad requests and the control API ----------------------------------------------------


@pytest.mark.parametrize(
    ("function", "address", "values", "code"),
    [
        ("read_input", 50, 10, ExceptionCode.ILLEGAL_ADDRESS),  # spans IR 56/57
        ("read_input", 57, 1, ExceptionCode.ILLEGAL_ADDRESS),
        ("read_input", 164, 1, ExceptionCode.ILLEGAL_ADDRESS),
        ("read_holding", 0, 1, ExceptionCode.ILLEGAL_ADDRESS),
        ("read_holding", 1204, 1, ExceptionCode.ILLEGAL_ADDRESS),
        ("write_single", COMMAND_START, [1], ExceptionCode.ILLEGAL_ADDRESS),  # not atomic
        ("write", COMMAND_START, [1, 1, 0], ExceptionCode.ILLEGAL_ADDRESS),  # part of it
        ("write", PRICES_START + 4, [0, 1], ExceptionCode.ILLEGAL_ADDRESS),  # no nozzle 3
        ("write", PRICES_START, [0, 0], ExceptionCode.ILLEGAL_VALUE),  # price 0
        ("write_single", SETTINGS_START + 3, [5], ExceptionCode.ILLEGAL_VALUE),  # MODE 5
        ("write", 0, [1], ExceptionCode.ILLEGAL_ADDRESS),  # input registers are read-only
    ],
)
async def test_bad_requests_get_exceptions(
    client: ModbusTcpClient, function: str, address: int, values: int | list[int], code: int
) -> None:
    unit = 8
    with pytest.raises(ModbusException) as refused:
        if function == "read_input":
            assert isinstance(values, int)
            await client.read_input_registers(unit, address, values)
        elif function == "read_holding":
            assert isinstance(values, int)
            await client.read_holding_registers(unit, address, values)
        elif function == "write_single":
            assert isinstance(values, list)
            await client.write_register(unit, address, values[0])
        else:
            assert isinstance(values, list)
            await client.write_registers(unit, address, values)
    assert refused.value.exception_code == code
    assert not refused.value.outcome_unknown


async def test_control_api_rejects_malformed_lines_and_keeps_working(
    sim: SimProcess, control: Control
) -> None:
    bad = [
        b"not json\n",
        b"\xff\xfe\n",
        b"[1, 2]\n",
        b'{"cmd": "teleport"}\n',
        b'{"cmd": "lift", "station": 0, "pump": 1}\n',  # no nozzle
        b'{"cmd": "lift", "station": 0, "pump": 1, "nozzle": 3}\n',  # a 2-nozzle pump
        b'{"cmd": "lift", "station": 0, "pump": 1, "nozzle": "1"}\n',
        b'{"cmd": "lift", "station": 9, "pump": 1, "nozzle": 1}\n',
        b'{"cmd": "lift", "station": 0, "pump": 1, "nozzle": 1, "bogus": 1}\n',
        b'{"cmd": "faults", "station": 0, "pump": 1, "drop_reply_probability": 2}\n',
        b"x" * 70_000 + b"\n",
    ]
    for i, line in enumerate(bad):
        reply = await control.raw(line)
        assert reply["ok"] is False and reply["error"], (i, reply)
    assert (await control.raw(b'{"cmd": "ping", "id": 42}\n'))["id"] == 42
    stats = (await control.call("statistics"))["control"]
    assert stats["errors"] >= len(bad)
    snapshot = await control.call("snapshot", station=0, pump=1)
    assert snapshot["faults"]["drop_reply_probability"] == 0.0  # nothing half-applied
    assert snapshot["status"]["nozzle_out_mask"] == 0


# -- the state file -------------------------------------------------------------------------


def _saved_buffer(path: Path) -> list[object]:
    try:
        document = json.loads(path.read_bytes())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    buffer: list[object] = document["stations"]["0"]["1"]["buffer"]
    return buffer


async def test_state_survives_sigkill_and_is_restored_with_a_power_up(tmp_path: Path) -> None:
    state = tmp_path / "pumps.json"
    args = ("--pumps-per-station", "1", "--state", str(state), "--control-port", "0")
    first = SimProcess(*args, "--speed", "5")
    first.start()
    try:
        async with ModbusTcpClient("127.0.0.1", first.port(), timeout=SAFE, backoff=FAST) as c:
            control = await Control.connect(first.control_port)
            await control.call("customer", station=0, pump=1, nozzle=2, hang_up_after_ml=1_500)
            await send_command(c, 1, authorize(1, auth_token=5))
            before = await wait_for(c, 1, FPState.COMPLETED)
            totals = await read_totals(c, 1)
            await control.aclose()
        with trio.fail_after(SAFE):  # the periodic write, not a shutdown: SIGKILL comes next
            while not _saved_buffer(state):  # noqa: ASYNC110 (a file has no event to wait for)
                await trio.sleep(0.05)
    finally:
        first.kill()

    second = SimProcess(*args)
    assert second.start()["restored"] == 1
    try:
        async with ModbusTcpClient("127.0.0.1", second.port(), timeout=SAFE, backoff=FAST) as c:
            after = await read_status(c, 1)
            assert await read_totals(c, 1) == totals and totals[1].volume_ml == 1_500
            control = await Control.connect(second.control_port)
            await control.call("stage_price", station=0, pump=1, nozzle=1, price=801_000)
            await control.aclose()
    finally:
        assert second.terminate() == 0, second.stderr()
    assert after.boot_count == before.boot_count + 1
    assert after.last_sale == before.last_sale and after.last_sale is not None
    assert after.last_sale.volume_ml == 1_500
    assert after.fp_state is FPState.COMPLETED  # a buffered sale waits to be collected
    saved = json.loads(state.read_bytes())["stations"]["0"]["1"]
    assert saved["boot_count"] == 2 and saved["staged_prices"][0] == 801_000
    assert os.listdir(tmp_path) == ["pumps.json"]


def test_an_unreadable_state_file_stops_the_start(tmp_path: Path) -> None:
    state = tmp_path / "pumps.json"
    state.write_text("{not json")
    process = SimProcess("--state", str(state))
    with pytest.raises(RuntimeError, match="not JSON"):
        process.start()
    assert state.read_text() == "{not json"  # left alone for a human to look at


def test_usage_and_bad_arguments() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "switch.cli", "sim", "pumps", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    usage = run("--help")
    assert usage.returncode == 0 and "--random-customers" in usage.stdout
    bad = run("--pumps-per-station", "0")
    assert bad.returncode == 1 and "pumps" in bad.stderr and not bad.stdout
