"""The Modbus clients against pymodbus servers (independent peers) and raw peers of our own.

pymodbus's server answers one request per connection at a time: its transport parses one
frame per read and clears its receive buffer whenever it sends, so a second request already
received is lost. Clients talking to it therefore run with ``max_in_flight=1``; pipelining
and out-of-order replies are tested against a raw peer that answers a whole batch backwards.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from actors import Backoff
from devices.modbus import (
    ExceptionCode,
    LinkState,
    ModbusConnectionError,
    ModbusException,
    ModbusFrameError,
    ModbusRtuClient,
    ModbusTcpClient,
    ModbusTimeout,
    Parity,
)
from tests.devices.modbus_server import (
    BUSY_UNIT,
    HOLDING_BASE,
    HUNG_UNIT,
    INPUT_COUNT,
    UNITS,
    holding_value,
    input_value,
)
from tests.devices.modbus_support import (
    MbapRequests,
    RtuDevice,
    ServerProcess,
    free_port,
    mbap,
    open_pty,
    registers_pdu,
    relay,
    rtu,
)

TIMEOUT = 0.3  # for requests that are meant to time out
SAFE = 5.0  # for requests that are meant to succeed: a bound, never a measurement
FAST = Backoff(min_delay=0.02, max_delay=0.2, jitter=0.0, reset_after=60.0)
RTU_BAUD = 115200  # ptys ignore it; it sets the client's t3.5 to 1.75 ms


def inputs(unit: int, address: int, count: int) -> list[int]:
    return [input_value(unit, address + i) for i in range(count)]


def pymodbus_client(port: int) -> ModbusTcpClient:
    return ModbusTcpClient("127.0.0.1", port, timeout=SAFE, max_in_flight=1, backoff=FAST)


Handler = Callable[[trio.SocketStream], Awaitable[object]]


async def serve_raw(nursery: trio.Nursery, handler: Handler) -> int:
    """A raw TCP peer of the test's own on a free loopback port; returns the port."""
    listeners = await nursery.start(functools.partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def answer(stream: trio.SocketStream, request: tuple[int, int, int, int, int]) -> None:
    """Reply to a read the way the pymodbus server's units would (input_value)."""
    tid, unit, function, address, count = request
    await stream.send_all(mbap(tid, unit, registers_pdu(function, inputs(unit, address, count))))


# -- Modbus TCP against pymodbus's server ---------------------------------------------------


@pytest.fixture(scope="module")
def tcp_port() -> Iterator[int]:
    port = free_port()
    server = ServerProcess("tcp", str(port))
    server.start()
    yield port
    server.stop()


async def test_tcp_reads_input_registers_of_several_units(tcp_port: int) -> None:
    async with pymodbus_client(tcp_port) as client:
        for unit in UNITS:
            assert await client.read_input_registers(unit, 0, 57) == inputs(unit, 0, 57)
        stats = client.statistics()
    assert (stats.requests, stats.responses, stats.in_flight) == (3, 3, 0)
    assert (stats.frame_errors, stats.timeouts, stats.reconnects) == (0, 0, 0)
    assert stats.last_rtt is not None


async def test_tcp_reads_and_writes_holding_registers(tcp_port: int) -> None:
    base = HOLDING_BASE + 8
    async with pymodbus_client(tcp_port) as client:
        assert await client.read_holding_registers(2, base, 4) == [
            holding_value(2, base + i) for i in range(4)
        ]
        await client.write_registers(2, base, [11, 12, 13, 14])
        assert await client.read_holding_registers(2, base, 4) == [11, 12, 13, 14]
        await client.write_register(2, base + 2, 0xFFFF)
        assert await client.read_holding_registers(2, base, 4) == [11, 12, 0xFFFF, 14]
        assert await client.read_holding_registers(1, base, 1) == [holding_value(1, base)]


async def test_tcp_concurrent_requests_across_units_are_matched(tcp_port: int) -> None:
    results: dict[tuple[int, int], list[int]] = {}
    async with pymodbus_client(tcp_port) as client:

        async def read(unit: int, address: int) -> None:
            results[unit, address] = await client.read_input_registers(unit, address, 4)

        async with trio.open_nursery() as nursery:
            for unit in UNITS:
                for address in (0, 10, 20, 30):
                    nursery.start_soon(read, unit, address)
        assert client.statistics().in_flight == 0
    assert results == {(u, a): inputs(u, a, 4) for u in UNITS for a in (0, 10, 20, 30)}


async def test_tcp_modbus_exception_replies(tcp_port: int) -> None:
    async with pymodbus_client(tcp_port) as client:
        with pytest.raises(ModbusException) as bad_address:
            await client.read_input_registers(1, INPUT_COUNT, 1)
        assert bad_address.value.exception_code == 2
        assert bad_address.value.exception_code is ExceptionCode.ILLEGAL_ADDRESS
        assert (bad_address.value.unit, bad_address.value.function_code) == (1, 4)
        assert not bad_address.value.outcome_unknown
        with pytest.raises(ModbusException) as busy:
            await client.write_register(BUSY_UNIT, HOLDING_BASE, 1)
        assert busy.value.exception_code == 6
        assert busy.value.exception_code is ExceptionCode.DEVICE_BUSY
        assert await client.read_input_registers(3, 1, 1) == [input_value(3, 1)]
        stats = client.statistics()
    assert (stats.exceptions, stats.responses, stats.frame_errors) == (2, 3, 0)


async def test_tcp_timeout_on_a_silent_unit_then_the_client_still_works(tcp_port: int) -> None:
    async with pymodbus_client(tcp_port) as client:
        with pytest.raises(ModbusTimeout) as timed_out:
            await client.read_input_registers(HUNG_UNIT, 0, 1, timeout=TIMEOUT)
        assert timed_out.value.outcome_unknown
        assert await client.read_input_registers(1, 5, 2) == inputs(1, 5, 2)
        stats = client.statistics()
    assert (stats.timeouts, stats.responses, stats.in_flight, stats.reconnects) == (1, 1, 0, 0)


async def test_tcp_client_runs_in_a_callers_nursery(tcp_port: int) -> None:
    client = pymodbus_client(tcp_port)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        assert await client.read_input_registers(2, 0, 1) == inputs(2, 0, 1)
        nursery.cancel_scope.cancel()
    assert client.state is LinkState.CLOSED
    with pytest.raises(ModbusConnectionError):
        await client.read_input_registers(2, 0, 1)
    with pytest.raises(ModbusConnectionError):
        await client.wait_connected()


async def test_tcp_reconnects_after_the_server_restarts() -> None:
    port = free_port()
    server = ServerProcess("tcp", str(port))
    server.start()
    try:
        async with pymodbus_client(port) as client:
            assert await client.read_input_registers(1, 0, 2) == inputs(1, 0, 2)
            server.stop()
            with pytest.raises(ModbusConnectionError):  # written or not, depending on timing
                await client.read_input_registers(1, 0, 2)
            for _ in range(3):  # the outage: every request fails at once, none hangs
                with pytest.raises(ModbusConnectionError) as down:
                    await client.read_input_registers(1, 0, 2)
                assert not down.value.outcome_unknown
            await trio.to_thread.run_sync(server.start)
            with trio.fail_after(SAFE):
                await client.wait_connected()
            assert await client.read_input_registers(2, 3, 2) == inputs(2, 3, 2)
            stats = client.statistics()
    finally:
        server.stop()
    assert stats.reconnects == 1
    assert stats.connection_errors == 4
    assert stats.last_error is not None


async def test_tcp_fails_fast_when_the_gateway_is_down() -> None:
    async with ModbusTcpClient("127.0.0.1", free_port(), backoff=FAST) as client:
        for _ in range(3):
            with pytest.raises(ModbusConnectionError) as down:
                await client.read_input_registers(1, 0, 1)
            assert not down.value.outcome_unknown
        stats = client.statistics()
    assert (stats.requests, stats.connection_errors) == (0, 3)
    assert stats.last_error is not None and "connect failed" in stats.last_error


# -- Modbus TCP against raw peers of our own ---------------------------------------------------


async def test_tcp_pipelines_requests_and_matches_out_of_order_replies(
    nursery: trio.Nursery,
) -> None:
    batch = 6

    async def backwards(stream: trio.SocketStream) -> None:
        # Answers only once the whole batch is in: passes only if all six were in flight.
        requests = MbapRequests(stream)
        received: list[tuple[int, int, int, int, int]] = []
        while len(received) < batch and (request := await requests.next()) is not None:
            received.append(request)
        for request in reversed(received):
            await answer(stream, request)
        await trio.sleep_forever()

    port = await serve_raw(nursery, backwards)
    results: dict[tuple[int, int], list[int]] = {}
    async with ModbusTcpClient("127.0.0.1", port, timeout=SAFE, max_in_flight=batch) as client:

        async def read(unit: int, address: int) -> None:
            results[unit, address] = await client.read_input_registers(unit, address, 3)

        async with trio.open_nursery() as readers:
            for i in range(batch):
                readers.start_soon(read, i % 3 + 1, 10 * i)
        stats = client.statistics()
    assert results == {(i % 3 + 1, 10 * i): inputs(i % 3 + 1, 10 * i, 3) for i in range(batch)}
    assert (stats.responses, stats.unknown_responses, stats.frame_errors) == (batch, 0, 0)


async def test_tcp_garbage_and_stray_frames_are_counted_and_survived(
    nursery: trio.Nursery,
) -> None:
    connections = 0

    async def noisy(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        requests = MbapRequests(stream)
        while (request := await requests.next()) is not None:
            tid, unit, function, address, count = request
            good = mbap(tid, unit, registers_pdu(function, inputs(unit, address, count)))
            await stream.send_all(
                b"\xff" * 11  # cannot start a frame (protocol id 0xFFFF): one garbage run
                + mbap(tid ^ 0x8000, unit, registers_pdu(function, [0] * count))  # nobody's tid
                + mbap(0x7777, unit, bytes([function, 40, 1, 2]))  # byte count 40: undecodable
                + good[:5]  # and the real reply, split across two writes
            )
            await stream.send_all(good[5:])

    port = await serve_raw(nursery, noisy)
    async with ModbusTcpClient("127.0.0.1", port, timeout=SAFE) as client:
        assert await client.read_input_registers(1, 0, 2) == inputs(1, 0, 2)
        assert await client.read_holding_registers(2, 7, 3) == inputs(2, 7, 3)
        stats = client.statistics()
    assert connections == 1
    assert (stats.responses, stats.reconnects, stats.state) == (2, 0, LinkState.CONNECTED)
    assert (stats.frame_errors, stats.unknown_responses) == (4, 2)  # 2 garbage + 2 bad PDUs
    assert stats.dropped_bytes == 22


async def test_tcp_late_reply_after_a_timeout_is_dropped(nursery: trio.Nursery) -> None:
    async def slow_first(stream: trio.SocketStream) -> None:
        requests = MbapRequests(stream)
        first = await requests.next()
        second = await requests.next()  # sent only once the first has timed out
        assert first is not None and second is not None
        await answer(stream, first)  # late
        await answer(stream, second)
        await trio.sleep_forever()

    port = await serve_raw(nursery, slow_first)
    async with ModbusTcpClient("127.0.0.1", port, timeout=TIMEOUT) as client:
        with pytest.raises(ModbusTimeout):
            await client.read_input_registers(1, 0, 1)
        assert await client.read_input_registers(2, 7, 2, timeout=SAFE) == inputs(2, 7, 2)
        stats = client.statistics()
    assert (stats.timeouts, stats.late_responses, stats.responses) == (1, 1, 1)
    assert (stats.unknown_responses, stats.in_flight, stats.reconnects) == (0, 0, 0)


async def test_tcp_an_earlier_deadline_expires_on_time_behind_a_later_one(
    nursery: trio.Nursery,
) -> None:
    # Deadlines sit in one heap per connection, watched by one task: a request whose
    # deadline is earlier than every other in flight must wake that task, not wait for it.
    release = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        requests = MbapRequests(stream)
        first = await requests.next()
        assert first is not None and await requests.next() is not None
        await release.wait()
        await answer(stream, first)  # the second is never answered
        await trio.sleep_forever()

    port = await serve_raw(nursery, hold)
    results: list[list[int]] = []
    async with ModbusTcpClient("127.0.0.1", port, timeout=SAFE) as client:

        async def patient() -> None:
            results.append(await client.read_input_registers(1, 0, 2, timeout=30.0))

        async with trio.open_nursery() as callers:
            callers.start_soon(patient)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(SAFE), pytest.raises(ModbusTimeout):
                await client.read_input_registers(2, 0, 1, timeout=TIMEOUT)
            release.set()
        stats = client.statistics()
    assert results == [inputs(1, 0, 2)]
    assert (stats.timeouts, stats.responses, stats.late_responses) == (1, 1, 0)


async def test_tcp_a_caller_cancelled_from_outside_leaves_its_reply_late(
    nursery: trio.Nursery,
) -> None:
    async def slow_first(stream: trio.SocketStream) -> None:
        requests = MbapRequests(stream)
        first = await requests.next()
        second = await requests.next()  # sent only once the first caller gave up
        assert first is not None and second is not None
        await answer(stream, first)  # late: its caller is gone
        await answer(stream, second)
        while (request := await requests.next()) is not None:
            await answer(stream, request)

    port = await serve_raw(nursery, slow_first)
    async with ModbusTcpClient("127.0.0.1", port, timeout=TIMEOUT) as client:
        with trio.move_on_after(TIMEOUT / 3) as gave_up:
            await client.read_input_registers(1, 0, 1)
        assert gave_up.cancelled_caught
        assert await client.read_input_registers(2, 7, 2, timeout=SAFE) == inputs(2, 7, 2)
        await trio.sleep(TIMEOUT)  # the abandoned request's deadline passes: nothing to do
        assert await client.read_input_registers(3, 1, 1, timeout=SAFE) == inputs(3, 1, 1)
        stats = client.statistics()
    assert (stats.timeouts, stats.late_responses, stats.responses) == (0, 1, 2)
    assert (stats.unknown_responses, stats.in_flight, stats.reconnects) == (0, 0, 0)


async def test_tcp_connection_lost_mid_request_fails_it_then_reconnects(
    nursery: trio.Nursery,
) -> None:
    connections = 0

    async def drop_first(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        requests = MbapRequests(stream)
        if connections == 1:
            await requests.next()
            await stream.aclose()  # with the request in flight
            return
        while (request := await requests.next()) is not None:
            await answer(stream, request)

    port = await serve_raw(nursery, drop_first)
    async with ModbusTcpClient("127.0.0.1", port, timeout=SAFE, backoff=FAST) as client:
        with pytest.raises(ModbusConnectionError) as lost:
            await client.read_input_registers(1, 0, 1)
        assert lost.value.outcome_unknown  # it was written: the device may have acted on it
        with trio.fail_after(SAFE):
            await client.wait_connected()
        assert await client.read_input_registers(1, 4, 2) == inputs(1, 4, 2)
        stats = client.statistics()
    assert (stats.reconnects, stats.connection_errors, stats.responses) == (1, 1, 1)


async def test_tcp_silent_connection_is_remade_after_repeated_timeouts(
    nursery: trio.Nursery,
) -> None:
    connections = 0

    async def mute_first(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        mute = connections == 1  # a half-open connection, as after a gateway reboot
        requests = MbapRequests(stream)
        while (request := await requests.next()) is not None:
            if not mute:
                await answer(stream, request)

    port = await serve_raw(nursery, mute_first)
    client = ModbusTcpClient(
        "127.0.0.1", port, timeout=TIMEOUT, backoff=FAST, drop_after_timeouts=2
    )
    async with client:
        for _ in range(2):
            with pytest.raises(ModbusTimeout):
                await client.read_input_registers(1, 0, 1)
        assert client.state is not LinkState.CONNECTED  # presumed dead at once
        with trio.fail_after(SAFE):
            await client.wait_connected()
        assert await client.read_input_registers(3, 0, 1, timeout=SAFE) == inputs(3, 0, 1)
        stats = client.statistics()
    assert connections == 2
    assert (stats.timeouts, stats.reconnects, stats.responses) == (2, 1, 1)


# -- Modbus RTU against pymodbus's serial server, over two ptys and a relay -------------------


@pytest.fixture(scope="module")
def rtu_line() -> Iterator[tuple[int, int, str]]:
    """pymodbus on one pty pair, the client's port on another; the relay is per test."""
    server_master, server_slave, server_path = open_pty()
    client_master, client_slave, client_path = open_pty()
    server = ServerProcess("rtu", server_path, str(RTU_BAUD))
    server.start()
    yield server_master, client_master, client_path
    server.stop()
    for fd in (server_master, server_slave, client_master, client_slave):
        os.close(fd)


@pytest.fixture
async def rtu_port(rtu_line: tuple[int, int, str], nursery: trio.Nursery) -> str:
    server_master, client_master, client_path = rtu_line
    nursery.start_soon(relay, server_master, client_master)
    nursery.start_soon(relay, client_master, server_master)
    return client_path


def rtu_client(path: str, timeout: float = SAFE) -> ModbusRtuClient:
    # No parity: a pty cannot keep PARENB (pyserial's second tcsetattr fails with EINVAL).
    return ModbusRtuClient(path, RTU_BAUD, parity=Parity.NONE, timeout=timeout)


async def test_rtu_reads_and_writes_registers(rtu_port: str) -> None:
    base = HOLDING_BASE + 16
    async with rtu_client(rtu_port) as client:
        for unit in UNITS:
            assert await client.read_input_registers(unit, 0, 57) == inputs(unit, 0, 57)
        await client.write_registers(3, base, [1, 2, 3])
        await client.write_register(3, base + 3, 0xBEEF)
        assert await client.read_holding_registers(3, base, 4) == [1, 2, 3, 0xBEEF]
        assert await client.read_holding_registers(2, base, 1) == [holding_value(2, base)]
        stats = client.statistics()
    assert (stats.requests, stats.responses, stats.frame_errors) == (7, 7, 0)


async def test_rtu_exception_and_timeout_then_the_line_still_works(rtu_port: str) -> None:
    async with rtu_client(rtu_port) as client:
        with pytest.raises(ModbusException) as bad_address:
            await client.read_holding_registers(1, 0, 1)
        assert bad_address.value.exception_code == ExceptionCode.ILLEGAL_ADDRESS
        with pytest.raises(ModbusTimeout):
            await client.read_input_registers(HUNG_UNIT, 0, 1, timeout=TIMEOUT)
        assert await client.read_input_registers(2, 9, 2) == inputs(2, 9, 2)
        stats = client.statistics()
    assert (stats.exceptions, stats.timeouts, stats.responses) == (1, 1, 2)


async def test_rtu_concurrent_callers_take_turns_on_the_line(rtu_port: str) -> None:
    results: dict[tuple[int, int], list[int]] = {}
    async with rtu_client(rtu_port) as client:

        async def read(unit: int, address: int) -> None:
            results[unit, address] = await client.read_input_registers(unit, address, 5)

        async with trio.open_nursery() as nursery:
            for i in range(9):
                nursery.start_soon(read, i % 3 + 1, 5 * i)
        stats = client.statistics()
    assert results == {(i % 3 + 1, 5 * i): inputs(i % 3 + 1, 5 * i, 5) for i in range(9)}
    assert (stats.responses, stats.in_flight, stats.frame_errors) == (9, 0, 0)


# -- Modbus RTU against a scripted device on a pty --------------------------------------------


async def test_rtu_crc_error_is_counted_and_the_next_request_works(nursery: trio.Nursery) -> None:
    master, slave, path = open_pty()
    device = RtuDevice(master)
    requests: list[bytes] = []

    async def corrupt_then_good() -> None:
        requests.append(await device.request())
        good = rtu(bytes([1, 4, 2, 0x12, 0x34]))
        await device.reply(good[:-1] + bytes([good[-1] ^ 0xFF]))
        requests.append(await device.request())
        await device.reply(rtu(bytes([1, 4, 2, 0xAB, 0xCD])))

    nursery.start_soon(corrupt_then_good)
    try:
        async with rtu_client(path) as client:
            with pytest.raises(ModbusFrameError) as bad:
                await client.read_input_registers(1, 0, 1)
            assert bad.value.outcome_unknown
            assert client.statistics().frame_errors == 1
            assert await client.read_input_registers(1, 0, 1) == [0xABCD]
            stats = client.statistics()
    finally:
        await device.aclose()
        os.close(master)
        os.close(slave)
    assert requests == [bytes.fromhex("01040000000131ca")] * 2  # the spec's example frame
    assert (stats.frame_errors, stats.responses, stats.state) == (1, 1, LinkState.CONNECTED)


async def test_rtu_late_reply_is_flushed_before_the_next_request(nursery: trio.Nursery) -> None:
    master, slave, path = open_pty()
    device = RtuDevice(master)
    timed_out, late_written = trio.Event(), trio.Event()

    async def late_then_good() -> None:
        first = await device.request()
        await timed_out.wait()
        await device.reply(rtu(first[:2] + bytes([2, 0x11, 0x11])))
        late_written.set()
        second = await device.request()
        await device.reply(rtu(second[:2] + bytes([4, 0, 7, 0, 8])))

    nursery.start_soon(late_then_good)
    try:
        async with rtu_client(path, timeout=TIMEOUT) as client:
            with pytest.raises(ModbusTimeout):
                await client.read_input_registers(4, 0, 1)
            timed_out.set()
            await late_written.wait()
            await trio.lowlevel.wait_readable(slave)  # the late reply has reached the line
            await trio.sleep(0.05)  # and all of it: a pty may pass it on in pieces
            assert await client.read_holding_registers(4, 0, 2, timeout=SAFE) == [7, 8]
            stats = client.statistics()
    finally:
        await device.aclose()
        os.close(master)
        os.close(slave)
    assert (stats.timeouts, stats.responses, stats.frame_errors) == (1, 1, 0)
    assert stats.dropped_bytes == 7


async def test_rtu_missing_port_fails_fast() -> None:
    async with rtu_client("/dev/fuelswitch-no-such-tty") as client:
        with pytest.raises(ModbusConnectionError) as down:
            await client.read_input_registers(1, 0, 1)
        assert not down.value.outcome_unknown
        stats = client.statistics()
    assert (stats.state, stats.requests, stats.connection_errors) == (LinkState.DISCONNECTED, 0, 1)
    assert stats.last_error is not None and "open failed" in stats.last_error
