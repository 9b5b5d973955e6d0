"""A station's subtree: its gateway connection, then one PumpActor per fuelling point.

``rest_for_one``: the gateway is started first and every pump after it, so when the
gateway actor restarts (its connection object is replaced), the pumps that drive through
it restart too and recover from their journals; a pump that crashes restarts alone. Pumps
restart with backoff, since a crash usually means the dispenser or the line is in trouble.

At the station's start the pumps, once the gateway is up, recover all at once: each one's
``init`` mostly waits (its journal, two reads through the gateway, which pipelines them),
and the pumps do not depend on one another. They read their journals in one query
(:class:`~switch.store.journal.PreloadingJournal`). Restarts are unchanged: the supervisor
restarts a ``rest_for_one`` group one child after another, in declared order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from actors import Actor, Backoff, ChildSpec, Strategy, Supervisor
from switch.store.journal import Journal, PreloadingJournal

from .gfd1_driver import Gfd1Driver
from .modbus import (
    ModbusConnectionError,
    ModbusStatistics,
    ModbusTcpClient,
    RegisterClient,
    Request,
)
from .pump import PumpActor


class GatewayLink(RegisterClient):
    """The station's current Modbus client, as a RegisterClient the pumps' drivers hold.

    Each gateway incarnation makes a new connection object; the pumps keep the link, so an
    operator's restart of the gateway alone does not leave them talking to a closed one.
    Between incarnations, requests fail as a link that is down does.
    """

    def __init__(self) -> None:
        super().__init__(timeout=1.0)
        self.client: ModbusTcpClient | None = None

    async def execute(self, request: Request, *, timeout: float | None = None) -> tuple[int, ...]:
        client = self.client
        if client is None:
            raise ModbusConnectionError("the station's gateway is restarting")
        return await client.execute(request, timeout=timeout)

    def statistics(self) -> ModbusStatistics:
        if self.client is None:
            raise ModbusConnectionError("the station's gateway is restarting")
        return self.client.statistics()


class GatewayActor(Actor):
    """Owns one Modbus TCP connection (many unit ids) for the life of its incarnation."""

    linked_tasks = True

    def __init__(self, link: GatewayLink, host: str, port: int, **options: Any) -> None:
        self.link = link
        self.host = host
        self.port = port
        self.options = options

    async def init(self) -> None:
        client = ModbusTcpClient(self.host, self.port, **self.options)
        await self._cell.nursery.start(client.run)
        self.link.client = client

    def _after_exit(self) -> None:
        self.link.client = None

    def snapshot(self) -> dict[str, Any]:
        client = self.link.client
        link = None if client is None else dataclasses.asdict(client.statistics())
        return {"gateway": f"{self.host}:{self.port}", "link": link}


@dataclass(frozen=True, slots=True)
class StationConfig:
    station_id: str
    host: str
    port: int
    units: Sequence[int]  # Modbus unit id of each fuelling point (= pump number)
    nozzles: int = 2
    # Requests outstanding on the gateway connection. 1 suits any gateway; one that
    # pipelines (the simulator does) lets a station's polls on one tick share a write.
    max_in_flight: int = 1
    active_poll_s: float = 0.25
    idle_poll_s: float = 1.0
    quiet_poll_s: float | None = 3.0  # a pump at rest for quiet_after_s (None: never slower)
    quiet_after_s: float = 30.0
    poll_quantum_s: float = 0.1


def pump_stream_id(station_id: str, unit: int) -> str:
    return f"pump:{station_id}.p{unit:02d}"


def station_spec(config: StationConfig, journal: Journal) -> ChildSpec:
    link = GatewayLink()
    journal = PreloadingJournal(
        journal, [pump_stream_id(config.station_id, unit) for unit in config.units]
    )
    gateway = ChildSpec(
        "gateway",
        lambda: GatewayActor(link, config.host, config.port, max_in_flight=config.max_in_flight),
    )
    pumps = [
        ChildSpec(
            f"p{unit:02d}",
            _pump_factory(link, journal, config, unit),
            backoff=Backoff(min_delay=0.5, max_delay=30.0),
        )
        for unit in config.units
    ]
    children = [gateway, *pumps]
    return ChildSpec(
        config.station_id,
        lambda: Supervisor(
            children,
            strategy=Strategy.REST_FOR_ONE,
            intensity=20,
            period=60.0,
            start_concurrency=max(1, len(pumps)),
            start_alone=1,  # the gateway, before the pumps that drive through it
        ),
        shutdown=float("inf"),
    )


def _pump_factory(link: GatewayLink, journal: Journal, config: StationConfig, unit: int) -> Any:
    def make() -> PumpActor:
        driver = Gfd1Driver(link, unit, nozzles=config.nozzles)
        return PumpActor(
            driver,
            journal,
            stream_id=pump_stream_id(config.station_id, unit),
            active_poll_s=config.active_poll_s,
            idle_poll_s=config.idle_poll_s,
            quiet_poll_s=config.quiet_poll_s,
            quiet_after_s=config.quiet_after_s,
            poll_quantum_s=config.poll_quantum_s,
        )

    return make
