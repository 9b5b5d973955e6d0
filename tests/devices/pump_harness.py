"""A switch-side process with one PumpActor, for the crash tests.

    python -m tests.devices.pump_harness DB_URL GATEWAY_PORT UNIT STREAM [SALE_ID PRESET_ML]

Starts a journal writer and a PumpActor (whose ``init`` runs the restart rules) for one
simulated fuelling point; with SALE_ID it authorizes that sale with a volume preset.
GATEWAY_PORT is a Modbus TCP port (GFD-1, UNIT the unit id), or a tty path for a DART
line (UNIT the pump number, at address 0x50 + UNIT - 1).
Then it waits until the point has no open sale and nothing left to clear, prints
``settled`` and exits. ``FUELSWITCH_CRASH_POINTS`` makes it die on the way.
"""

from __future__ import annotations

import logging
import sys
from contextlib import AsyncExitStack

import structlog
import trio

from actors import ChildSpec, open_system
from devices.dart.driver import DartDriver
from devices.dart.line import DartLine
from devices.driver import PumpDriver
from devices.gfd1 import PresetType
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient, Parity
from devices.pump import Authorize, PumpActor
from switch.store import open_database
from switch.store.journal import Journal, journal_writer_spec


async def main(db_url: str, target: str, unit: int, stream: str, sale: list[str]) -> None:
    async with AsyncExitStack() as stack:
        driver: PumpDriver
        if target.startswith("/"):
            address = 0x4F + unit
            line = DartLine(target, [address], parity=Parity.NONE, reply_timeout=0.3)
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            await nursery.start(line.run)
            driver = DartDriver(line, address, nozzles=2)
        else:
            client = ModbusTcpClient("127.0.0.1", int(target), timeout=0.5, max_in_flight=1)
            driver = Gfd1Driver(await stack.enter_async_context(client), unit, nozzles=2)
        db = await stack.enter_async_context(open_database(db_url))
        system = await stack.enter_async_context(
            open_system([journal_writer_spec(db)], intensity=10)
        )
        journal = Journal(system, db)
        spec = ChildSpec(
            "pump",
            lambda: PumpActor(
                driver, journal, stream_id=stream, active_poll_s=0.05, idle_poll_s=0.05
            ),
        )
        await system.start_child(spec)
        print("started", flush=True)
        if sale:
            sale_id, preset = sale
            await system.call(
                "pump", Authorize(sale_id, PresetType.VOLUME, int(preset), nozzle_mask=1)
            )
            print("authorized", flush=True)
        with trio.fail_after(60):
            while True:
                state = system.snapshot("pump").state
                if state["open_sale"] is None and state["pending_clear"] is None:
                    break
                await trio.sleep(0.05)
        print("settled", flush=True)


if __name__ == "__main__":
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    args = sys.argv[1:]
    trio.run(main, args[0], args[1], int(args[2]), args[3], args[4:])
