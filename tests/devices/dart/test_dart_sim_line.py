"""``fuelswitch sim pumps --dart PTY`` as a real process, spoken to over a real pty pair.

The test is the line master: it writes raw frames built by ``devices.dart.frames`` to
the pty master and decodes what comes back; the customer is played through the control
API. One simulator serves the module (one TCP station, a DART line of three pumps as
station 1, its clock five times faster than real time); each test uses pumps of its own.
Waits are bounded polls for what must happen; nothing here measures time beyond the
lower bound the simulated wire must respect.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from devices.dart import (
    CD1,
    DC1,
    BadFrame,
    Command,
    Filling,
    Frame,
    FrameDecoder,
    Kind,
    NozzlePrice,
    Prices,
    Status,
    Totals,
    TotalsRequest,
    Transaction,
    decode_from_pump,
    encode,
    encode_block,
)
from tests.devices.modbus_support import open_pty
from tests.devices.sim_support import SAFE, Control, SimProcess, close_fds

DART_STATION = 1
CHAR_TIME = 11 / 9600  # 8O1 at 9600 baud


@pytest.fixture(scope="module")
def dart_pty() -> Iterator[tuple[int, str]]:
    master, slave, path = open_pty()
    yield master, path
    close_fds(master, slave)


@pytest.fixture(scope="module")
def sim(dart_pty: tuple[int, str]) -> Iterator[SimProcess]:
    args = ("--pumps-per-station", "2", "--control-port", "0", "--speed", "5")
    process = SimProcess(*args, "--dart", dart_pty[1], "--dart-pumps", "3")
    process.start()
    yield process
    status = process.terminate()
    assert status == 0, process.stderr()


@pytest.fixture
async def control(sim: SimProcess) -> AsyncIterator[Control]:
    connection = await Control.connect(sim.control_port)
    yield connection
    await connection.aclose()


class Wire:
    """The master's end of the line: one frame out, the reply (or silence) back."""

    def __init__(self, master: int) -> None:
        self.stream = trio.lowlevel.FdStream(os.dup(master))
        self.decoder = FrameDecoder()
        self.seq = 0

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def exchange(self, frame: Frame, timeout: float = SAFE) -> Frame | BadFrame | None:
        """Write ``frame``; the first frame that comes back, None after ``timeout``."""
        await self.stream.send_all(encode(frame))
        with trio.move_on_after(timeout):
            while True:
                events = self.decoder.feed(await self.stream.receive_some(4096))
                if events:
                    assert len(events) == 1, events
                    return events[0]
        return None

    async def reply(self, frame: Frame) -> Frame:
        reply = await self.exchange(frame)
        assert isinstance(reply, Frame), reply
        return reply

    async def block(self, address: int, *transactions: Transaction) -> None:
        frame = Frame(address, Kind.DATA, self.seq, encode_block(transactions))
        self.seq = (self.seq + 1) % 16
        assert await self.reply(frame) == Frame(address, Kind.ACK, frame.seq)

    async def news(self, address: int) -> list[Transaction]:
        """POLL, take the DATA block or EOT (then []), acknowledge what came."""
        reply = await self.reply(Frame(address, Kind.POLL))
        if reply.kind is Kind.EOT:
            return []
        assert reply.kind is Kind.DATA, reply
        assert await self.exchange(Frame(address, Kind.ACK, reply.seq), timeout=0.05) is None
        return decode_from_pump(reply.data)

    async def until(self, address: int, status: DC1) -> list[Transaction]:
        """Poll until a block reports ``status``; that block."""
        with trio.fail_after(SAFE):
            while True:
                news = await self.news(address)
                if Status(status) in news:
                    return news
                await trio.sleep(0.02)


@pytest.fixture
async def wire(dart_pty: tuple[int, str], sim: SimProcess) -> AsyncIterator[Wire]:
    line = Wire(dart_pty[0])
    yield line
    await line.aclose()


async def test_ready_line_and_a_sale_over_the_pty(
    sim: SimProcess, wire: Wire, control: Control, dart_pty: tuple[int, str]
) -> None:
    assert sim.ready["dart"] == {
        "station": DART_STATION,
        "path": dart_pty[1],
        "units": [1, 2, 3],
        "addresses": [0x50, 0x51, 0x52],
        "baudrate": 9600,
        "parity": "O",
    }
    started = trio.current_time()
    assert await wire.reply(Frame(0x50, Kind.POLL)) == Frame(0x50, Kind.EOT, 0)
    assert trio.current_time() - started >= 6 * CHAR_TIME  # POLL and EOT crossed the wire
    assert await wire.exchange(Frame(0x5F, Kind.POLL), timeout=0.3) is None  # no such pump

    await control.call("lift", station=DART_STATION, pump=2, nozzle=1)
    assert await wire.news(0x51) == [NozzlePrice(789, 1, True)]
    await wire.block(0x51, Command(CD1.AUTHORIZE))
    assert (await wire.news(0x51))[0] == Status(DC1.AUTHORIZED)
    filling = await wire.until(0x51, DC1.FILLING)
    assert isinstance(filling[-1], Filling)
    await control.call("hang_up", station=DART_STATION, pump=2)
    ended = await wire.until(0x51, DC1.FILLING_COMPLETED)
    final = ended[-1]
    assert isinstance(final, Filling) and final.volume > 0

    await wire.block(0x51, TotalsRequest(0x01))
    assert await wire.news(0x51) == [Totals(0x01, final.volume, final.amount, 0)]
    await wire.block(0x51, Command(CD1.RESET))
    assert (await wire.news(0x51))[0] == Status(DC1.RESET)
    (sale,) = (await control.call("ledger", station=DART_STATION, pump=2))["sales"]
    assert (sale["volume_ml"], sale["amount_fen"], sale["auth_token"]) == (
        final.volume,
        final.amount,
        1,
    )
    snapshot = await control.call("snapshot", station=DART_STATION, pump=2)
    dart = snapshot["statistics"]["dart"]
    assert dart["address"] == 0x51 and dart["status"] == DC1.RESET and dart["blocks_in"] == 3


async def test_faults_and_power_cycle_through_the_control_api(wire: Wire, control: Control) -> None:
    pump = {"station": DART_STATION, "pump": 3}
    await control.call("faults", **pump, crc_error_probability=1.0)
    garbled = await wire.exchange(Frame(0x52, Kind.POLL))
    assert isinstance(garbled, BadFrame)  # an EOT with its control byte garbled
    await control.call("faults", **pump, crc_error_probability=0.0, drop_reply_probability=1.0)
    assert await wire.exchange(Frame(0x52, Kind.POLL), timeout=0.3) is None
    await control.call("faults", **pump, drop_reply_probability=0.0)

    await control.call("power_cycle", **pump)
    assert (await wire.news(0x52))[0] == Status(DC1.NOT_PROGRAMMED)
    await wire.block(0x52, Prices((789, 842)), Command(CD1.RESET))
    assert (await wire.news(0x52))[0] == Status(DC1.RESET)
    stats = (await control.call("statistics"))["dart"]
    assert stats["station"] == DART_STATION and stats["open"]
    assert (stats["corrupted"], stats["dropped"]) == (1, 1)


def test_bad_dart_arguments_stop_the_start() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "switch.cli", "sim", "pumps", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    too_many = run("--dart", "/dev/null", "--dart-pumps", "33")
    assert too_many.returncode == 1 and "DART" in too_many.stderr and not too_many.stdout
    missing = run("--dart", "/nonexistent/tty")
    assert missing.returncode == 1 and "/nonexistent/tty: cannot open" in missing.stderr
