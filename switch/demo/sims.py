"""Talking to the simulators the demo runs: the pump simulator's JSON-lines control API, the
provider simulators' HTTP control API, and fetching what :func:`switch.invariants.check_books`
compares against (the providers' ledgers, the pumps' sales and totalizers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
import trio

from .procs import DemoError

__all__ = [
    "ProviderControl",
    "PumpControl",
    "fetch_provider_ledgers",
    "fetch_pump_ledger",
    "pump_totals",
    "totals_moved",
]

CALL_TIMEOUT_S = 10.0

Totals = dict[tuple[str, int, int], int]


class PumpControl:
    """One connection to ``fuelswitch sim pumps --control-port``; calls are serialized (the
    protocol answers in order on one connection). ``stations`` maps the simulator's station
    numbers to the switch's station ids."""

    def __init__(self, port: int, stations: Mapping[int, str], host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.stations = dict(stations)
        self.numbers = {sid: n for n, sid in stations.items()}
        self._stream: trio.SocketStream | None = None
        self._buffer = bytearray()
        self._lock = trio.Lock()
        self.calls = 0

    def statistics(self) -> dict[str, int]:
        return {"calls": self.calls}

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """One command; ``station`` may be given as the switch's id. DemoError on refusal."""
        if isinstance(args.get("station"), str):
            args["station"] = self.numbers[args["station"]]
        async with self._lock:
            self.calls += 1
            with trio.fail_after(CALL_TIMEOUT_S):
                if self._stream is None:
                    self._stream = await trio.open_tcp_stream(self.host, self.port)
                await self._stream.send_all(orjson.dumps({"cmd": cmd, **args}) + b"\n")
                while (end := self._buffer.find(b"\n")) < 0:
                    data = await self._stream.receive_some(1 << 20)
                    if not data:
                        raise DemoError("the pump simulator closed its control connection")
                    self._buffer += data
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
        reply: dict[str, Any] = orjson.loads(line)
        if not reply.get("ok"):
            raise DemoError(f"pump simulator refused {cmd} {args}: {reply.get('error')}")
        return reply


class ProviderControl:
    """The control API of one ``fuelswitch sim providers`` process."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            reply = await self.client.request(
                method, self.base_url + path, json=body, timeout=CALL_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            raise DemoError(f"provider control {method} {path}: {exc!r}") from None
        if reply.status_code != 200:
            raise DemoError(f"provider control {method} {path}: {reply.status_code} {reply.text}")
        return reply.json()

    async def patch_faults(self, provider: str, **settings: Any) -> None:
        await self.request("PATCH", f"/faults/{provider}", settings)

    async def put_faults(self, provider: str, **settings: Any) -> None:
        await self.request("PUT", f"/faults/{provider}", settings)

    async def ledger(self) -> list[dict[str, Any]]:
        trades: list[dict[str, Any]] = await self.request("GET", "/ledger")
        return trades


async def fetch_provider_ledgers(
    controls: Sequence[ProviderControl],
) -> dict[str, list[dict[str, Any]]]:
    """Every trade of every simulator process, grouped by provider (trades of different
    processes are told apart by their merchant id)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for control in controls:
        for trade in await control.ledger():
            out.setdefault(str(trade["provider"]), []).append(trade)
    return out


async def fetch_pump_ledger(control: PumpControl) -> list[dict[str, Any]]:
    """The pump simulator's ended sales, with ``station`` as the switch's station id."""
    reply = await control.call("ledger")
    return [
        {**sale, "station": control.stations[sale["station"]]}
        for sale in reply["sales"]
        if sale["station"] in control.stations
    ]


async def pump_totals(control: PumpControl, pumps: int) -> Totals:
    """The volume totalizers of every nozzle now, per (station id, pump, nozzle)."""
    out: Totals = {}
    for number, station in control.stations.items():
        for pump in range(1, pumps + 1):
            snap = await control.call("snapshot", station=number, pump=pump)
            for nozzle, totals in enumerate(snap["totals"], start=1):
                out[(station, pump, nozzle)] = int(totals["volume_ml"])
    return out


def totals_moved(before: Totals, after: Totals) -> Totals:
    return {key: after[key] - before.get(key, 0) for key in after}
