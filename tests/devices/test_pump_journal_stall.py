"""A PumpActor whose journal does not answer at start defers its recovery, like a pump that
does not answer: the actor (and so its station, and the switch's start) does not fail.

On a starved machine the journal writer may not commit a pump's first event within the
caller's timeout. The write is then of unknown outcome: it may still commit. Here a gate in
front of the real writer holds the first writes (their callers time out) and lets them
through later: the actor must refuse sales until it recovered, read its journal again
before retrying, and end with the journal exactly as one clean start would have left it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import trio

from actors import NOREPLY, Actor, ChildSpec, Reply, open_system
from devices.driver import PumpUnreachable
from devices.gfd1 import PresetType
from devices.gfd1_driver import Gfd1Driver
from devices.modbus import ModbusTcpClient
from devices.pump import Authorize, Authorized, PumpActor
from switch.store import Store
from switch.store.errors import ConflictError
from switch.store.journal import Event, Journal, journal_writer_spec
from tests.devices.sim_support import Control, SimProcess

SAFE = 30.0  # a bound for what must happen, never a measurement


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    process = SimProcess(
        "--stations", "1", "--pumps-per-station", "1", "--port-base", "0",
        "--control-port", "0", "--speed", "5", "--seed", "5",
    )  # fmt: skip
    process.start()
    yield process
    process.kill()


class Open:
    """Cast to the gate: let the held writes through, then pass everything on."""


class Gate(Actor):
    """In front of the journal writer: while closed, appends are held without an answer
    (their callers time out, as with a starved writer); opened, they reach the writer late."""

    def __init__(self) -> None:
        self.held: list[Any] = []
        self.open = False

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        if not self.open:
            self.held.append(msg)
            return NOREPLY
        return await self.call("journal", msg, timeout=SAFE)

    async def handle_cast(self, msg: Any) -> None:
        if isinstance(msg, Open):
            self.open = True
            for held in self.held:
                # The retries of the same first write conflict with it: the writer says
                # so, to callers that gave up long ago.
                with contextlib.suppress(ConflictError):
                    await self.call("journal", held, timeout=SAFE)

    def snapshot(self) -> dict[str, Any]:
        return {"held": len(self.held), "open": self.open}


class QuickJournal(Journal):
    """The real journal; its appends wait ``timeout`` (short while the gate is closed, so
    that the test need not wait the default 10 s)."""

    timeout = 0.3

    async def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        *,
        expected_seq: int | None,
        terminal: bool = False,
        timeout: float | None = None,
    ) -> int:
        return await super().append(
            stream_id, events, expected_seq=expected_seq, terminal=terminal, timeout=self.timeout
        )


async def until(check: Callable[[], bool]) -> None:
    """Until ``check`` holds (a bound, never a measurement)."""
    with trio.fail_after(SAFE):
        while not check():  # noqa: ASYNC110 - the actor's state has no event to wait on
            await trio.sleep(0.02)


async def test_a_journal_that_does_not_answer_at_start_defers_the_recovery(
    store: Store, sim: SimProcess
) -> None:
    stream = f"pump:t{secrets.token_hex(4)}.p1"
    async with (
        ModbusTcpClient("127.0.0.1", sim.port(0), timeout=0.25, max_in_flight=1) as client,
        open_system([journal_writer_spec(store.db)], intensity=10) as system,
    ):
        await system.start_child(ChildSpec("gate", Gate))
        journal = QuickJournal(system, store.db, writer="gate")
        driver = Gfd1Driver(client, 1, nozzles=2)
        spec = ChildSpec(
            "pump",
            lambda: PumpActor(
                driver, journal, stream_id=stream, active_poll_s=0.05, idle_poll_s=0.1
            ),
        )
        await system.start_child(spec)  # started, though its first write went unanswered
        assert system.snapshot("pump").state["recovered"] is None
        assert system.snapshot("gate").state["held"] >= 1
        with pytest.raises(PumpUnreachable, match="not yet reconciled"):
            await system.call("pump", Authorize("early", PresetType.VOLUME, 1000), timeout=SAFE)

        journal.timeout = SAFE
        system.cast("gate", Open())
        await until(lambda: system.snapshot("pump").state["recovered"] is not None)
        control = await Control.connect(sim.control_port)
        try:
            await control.call("customer", station=0, pump=1, nozzle=1, hang_up_after_ml=600)
            authorized = await system.call(
                "pump", Authorize("after", PresetType.VOLUME, 600, nozzle_mask=1), timeout=SAFE
            )
            assert isinstance(authorized, Authorized)
            await until(lambda: system.snapshot("pump").state["open_sale"] is None)
        finally:
            await control.aclose()
        events = await journal.load(stream)
    types = [e.type for e in events]
    assert types.count("contact") == 1  # the late write committed; the retry saw it
    # (``fuelling`` only if a poll saw the flow: a short sale on a busy machine may not.)
    sale = [t for t in types[types.index("auth_requested") :] if t != "fuelling"]
    assert sale == ["auth_requested", "authorized", "completed", "cleared"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
