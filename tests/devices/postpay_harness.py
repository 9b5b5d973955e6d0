"""A switch-side process with one PumpActor collecting a post-pay sale, for the crash tests.

    python -m tests.devices.postpay_harness DB_URL GATEWAY_PORT UNIT STREAM [ORDER_ID]

Starts a journal writer and a PumpActor (whose ``init`` runs the restart rules, and
finishes a collection left half-done) for one simulated GFD-1 fuelling point. With
ORDER_ID it waits for a payable sale, locks the buffer's head for that order and
collects it, printing ``locked`` and ``collected``. Then it waits until no collection is
pending, prints ``settled`` and exits. ``FUELSWITCH_CRASH_POINTS`` makes it die on the way.
"""

from __future__ import annotations

import logging
import sys
from contextlib import AsyncExitStack

import structlog
import trio

from actors import ChildSpec, open_system
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import CollectSale, LockSale, PayableSale, PayableSales, PumpActor
from switch.store import open_database
from switch.store.journal import Journal, journal_writer_spec


async def main(db_url: str, port: int, unit: int, stream: str, order: list[str]) -> None:
    async with AsyncExitStack() as stack:
        client = ModbusTcpClient("127.0.0.1", port, timeout=0.5, max_in_flight=1)
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
        with trio.fail_after(60):
            if order:
                (order_id,) = order
                while True:
                    payable: tuple[PayableSale, ...] = await system.call("pump", PayableSales())
                    if payable:
                        break
                    await trio.sleep(0.05)
                seq = payable[0].pump_sale_seq
                await system.call("pump", LockSale(seq, order_id))
                print("locked", flush=True)
                await system.call("pump", CollectSale(seq, order_id))
                print("collected", flush=True)
            while True:
                if system.snapshot("pump").state["collecting"] is None:
                    break
                await trio.sleep(0.05)
        print("settled", flush=True)


if __name__ == "__main__":
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    args = sys.argv[1:]
    trio.run(main, args[0], int(args[1]), int(args[2]), args[3], args[4:])
