"""The simulator's control API: one JSON object per line in, one per line out.

Sans-IO: :meth:`Control.handle_line` takes a line and the model time and returns the
reply line; the trio adapter (``devices.sim.service``) owns the socket. Tests and load
tests use it to play the customer and the electrician; the switch never does.

Every request is an object with ``"cmd"`` and, optionally, ``"id"`` (echoed back).
Every reply is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``; a malformed
line, an unknown command, a bad argument or a pump that does not exist get an error
reply, and the connection stays usable. Commands (``station``/``pump`` name one point;
``pump`` is its unit id):

============  ===============================================================================
ping          ``{}`` -> ``{"now_s"}``
lift          ``station, pump, nozzle``
hang_up       ``station, pump[, nozzle]`` (every nozzle out if none is named)
customer      ``station, pump, nozzle[, hang_up_after_ml][, hang_up_after_s][, lift_in_s]
              [, patience_s]``: a scripted customer (see ``records.Customer``)
power_cycle   ``station, pump[, lose_in_progress=false]`` -> ``{"boot_count", "sale"}``
faults        ``station, pump[, <any Faults field>...]`` -> ``{"faults"}`` (all of them, after)
pulser_error  ``station, pump``: the pulser fails now
stage_price   ``station, pump, nozzle, price`` (milli-fen/L; APPLY_PRICES puts it in force)
configure     ``station, pump[, host_watchdog_s][, max_unpaid][, auth_timeout_s][, mode]``
snapshot      ``station, pump`` -> status, totals, config, settings, prices, buffer, ledger,
              faults, customers, statistics of that pump
ledger        ``[station[, pump]]`` -> ``{"sales": [{"station", "pump", ...sale}]}``: every
              sale ended since the simulator started (lost ones have state 0), in order
persist       ``{}``: write the state file now -> ``{"path"}``
statistics    ``{}`` -> the simulator's counters (servers, points)
============  ===============================================================================

Values are JSON numbers and booleans; enumerations are their register values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

import orjson
import structlog

from .faults import Faults
from .records import Customer
from .simulation import SimPoint, Simulation

log = structlog.get_logger("devices.sim")

MAX_LINE: Final = 65536
_MISSING: Final = object()
_U32: Final = 0xFFFF_FFFF
_FAULT_TYPES: Final[dict[str, str]] = {
    "drop_reply_probability": "number",
    "delay_reply_probability": "number",
    "delay_reply_s": "number",
    "crc_error_probability": "number",
    "busy_reply_probability": "number",
    "busy_commands": "integer",
    "stuck_flow": "boolean",
    "pulser_error_at_ml": "optional integer",
    "power_loss_at_ml": "optional integer",
    "power_loss_loses_sale": "boolean",
}


_PUMP: Final = frozenset({"station", "pump"})
ALLOWED: Final[dict[str, frozenset[str]]] = {
    "ping": frozenset(),
    "lift": _PUMP | {"nozzle"},
    "hang_up": _PUMP | {"nozzle"},
    "customer": _PUMP
    | {"nozzle", "hang_up_after_ml", "hang_up_after_s", "lift_in_s", "patience_s"},
    "power_cycle": _PUMP | {"lose_in_progress"},
    "faults": _PUMP | set(_FAULT_TYPES),
    "pulser_error": _PUMP,
    "stage_price": _PUMP | {"nozzle", "price"},
    "configure": _PUMP | {"host_watchdog_s", "max_unpaid", "auth_timeout_s", "mode"},
    "snapshot": _PUMP,
    "ledger": _PUMP,
    "persist": frozenset(),
    "statistics": frozenset(),
}


class ControlError(ValueError):
    """A request that cannot be carried out; its message goes back to the caller."""


@dataclass(frozen=True, slots=True)
class Response:
    body: dict[str, Any]
    persist: bool = False  # the adapter writes the state file, then sends ``body``

    def encode(self) -> bytes:
        return orjson.dumps(self.body) + b"\n"


@dataclass(frozen=True, slots=True)
class Args:
    """Typed access to one request object."""

    data: Mapping[str, Any]

    def get(self, name: str, kind: str, default: Any = _MISSING) -> Any:
        """The argument ``name`` of ``kind`` ("integer", "number", "boolean", optionally
        prefixed "optional ": null allowed); ``default`` when absent (else an error)."""
        value = self.data.get(name, _MISSING)
        if value is None and kind.startswith("optional "):
            return None
        if value is _MISSING or (value is None and default is not _MISSING):
            if default is _MISSING:
                raise ControlError(f"missing {name!r}")
            return default
        base = kind.removeprefix("optional ")
        ok = {
            "integer": type(value) is int,
            "number": type(value) in (int, float),
            "boolean": type(value) is bool,
        }[base]
        if not ok:
            raise ControlError(f"{name!r} must be a JSON {base}, not {value!r}")
        return value

    def integer(self, name: str, low: int, high: int, default: Any = _MISSING) -> Any:
        value = self.get(name, "integer", default)
        if isinstance(value, int) and not low <= value <= high:
            raise ControlError(f"{name!r} must be within {low}..{high}")
        return value

    def number(self, name: str, default: Any = _MISSING) -> Any:
        value = self.get(name, "number", default)
        if isinstance(value, int | float) and not 0 <= value < 1e9:
            raise ControlError(f"{name!r} must be a non-negative number")
        return value


def _parse(line: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ControlError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("a request is a JSON object")
    return data


def _sale(station: int, unit: int, sale: Any) -> dict[str, Any]:
    return {"station": station, "pump": unit, **asdict(sale)}


class Control:
    """Carries out control requests against a simulation. ``statistics`` adds the
    servers' counters (the trio side knows them) to the ``statistics`` reply."""

    def __init__(
        self, sim: Simulation, statistics: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        self.sim = sim
        self._statistics = statistics
        self.requests = self.errors = 0
        self._commands: dict[str, Callable[[Args, float], dict[str, Any]]] = {
            "ping": lambda a, now: {"now_s": now},
            "lift": self._lift,
            "hang_up": self._hang_up,
            "customer": self._customer,
            "power_cycle": self._power_cycle,
            "faults": self._faults,
            "pulser_error": self._pulser_error,
            "stage_price": self._stage_price,
            "configure": self._configure,
            "snapshot": self._snapshot,
            "ledger": self._ledger,
            "persist": lambda a, now: {},
            "statistics": self._stats,
        }

    def statistics(self) -> dict[str, int]:
        return {"requests": self.requests, "errors": self.errors}

    def handle_line(self, line: bytes, now_s: float) -> Response:
        self.requests += 1
        request_id: Any = None
        try:
            data = _parse(line)
            request_id = data.get("id")
            body = self._run(data, now_s)
        except (ControlError, KeyError, ValueError) as exc:  # KeyError: no such pump
            self.errors += 1
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return Response({"ok": False, "id": request_id, "error": message})
        except Exception as exc:  # a bug here must not take the simulator down mid-test
            self.errors += 1
            log.exception("sim.control_failed", line=line[:200])
            return Response({"ok": False, "id": request_id, "error": f"internal: {exc!r}"})
        return Response({"ok": True, "id": request_id, **body}, persist=data["cmd"] == "persist")

    def _run(self, data: dict[str, Any], now_s: float) -> dict[str, Any]:
        """Check the whole request before acting on any of it: an error reply means
        nothing was done (beyond advancing the point to the present)."""
        command = data.get("cmd")
        handler = self._commands.get(command) if isinstance(command, str) else None
        if handler is None or not isinstance(command, str):
            raise ControlError(f"unknown command {command!r}")
        if unknown := sorted(set(data) - ALLOWED[command] - {"cmd", "id"}):
            raise ControlError(f"unknown arguments {unknown} for {command!r}")
        return handler(Args(data), now_s)

    # -- commands ---------------------------------------------------------------------------

    def _target(self, a: Args, now_s: float) -> SimPoint:
        station = a.integer("station", 0, 65535)
        sim = self.sim.point(station, a.integer("pump", 0, 255))
        sim.advance(now_s)  # act at the present
        return sim

    def _lift(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sim.point.lift_nozzle(a.integer("nozzle", 1, 8))
        sim.collect()
        return {"fp_state": int(sim.point.state)}

    def _hang_up(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sim.point.hang_up(a.integer("nozzle", 1, 8, None))
        sim.collect()
        return {"fp_state": int(sim.point.state)}

    def _customer(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        customer = Customer(
            nozzle=a.integer("nozzle", 1, 8),
            lift_at_s=sim.point.now_s + a.number("lift_in_s", 0.0),
            hang_up_after_ml=a.integer("hang_up_after_ml", 1, _U32, None),
            hang_up_after_s=a.number("hang_up_after_s", None),
            patience_s=a.number("patience_s", None),
        )
        sim.point.add_customer(customer)
        sim.collect()
        return {"customers": sim.point.customers}

    def _power_cycle(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sale = sim.point.power_cycle(a.get("lose_in_progress", "boolean", False))
        sim.collect()
        return {"boot_count": sim.point.boot_count, "sale": sale}

    def _faults(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        current = asdict(sim.point.faults)
        changes = {name: a.get(name, kind) for name, kind in _FAULT_TYPES.items() if name in a.data}
        try:
            checked = Faults(**{**current, **changes})  # validates the combination
        except (TypeError, ValueError) as exc:
            raise ControlError(f"bad faults: {exc}") from None
        for name in changes:  # the model holds this very object: mutate it in place
            setattr(sim.point.faults, name, getattr(checked, name))
        sim.point.advance(sim.point.now_s)  # a one-shot fault may be due at once
        sim.collect()
        return {"faults": sim.point.faults}

    def _pulser_error(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sim.point.inject_pulser_error()
        sim.collect()
        return {"fp_state": int(sim.point.state)}

    def _stage_price(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sim.point.stage_price(a.integer("nozzle", 1, 8), a.integer("price", 1, _U32))
        return {"staged_prices": sim.point.staged_prices}

    def _configure(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        sim.point.configure(
            host_watchdog_s=a.integer("host_watchdog_s", 0, 0xFFFF, None),
            max_unpaid=a.integer("max_unpaid", 0, 0xFFFF, None),
            auth_timeout_s=a.integer("auth_timeout_s", 0, 0xFFFF, None),
            mode=a.integer("mode", 0, 1, None),
        )
        sim.collect()
        return {"settings": sim.point.settings_block()}

    def _snapshot(self, a: Args, now_s: float) -> dict[str, Any]:
        sim = self._target(a, now_s)
        point = sim.point
        return {
            "now_s": point.now_s,
            "status": point.status(),
            "totals": point.totals(),
            "config": point.config(),
            "settings": point.settings_block(),
            "staged_prices": point.staged_prices,
            "applied_prices": point.applied_prices,
            "buffer": point.buffer,
            "ledger": sim.ledger,
            "faults": point.faults,
            "customers": point.customers,
            "statistics": sim.snapshot(),
        }

    def _ledger(self, a: Args, now_s: float) -> dict[str, Any]:
        station = a.integer("station", 0, 65535, None)
        pump = a.integer("pump", 0, 255, None)
        self.sim.advance_all(now_s)  # sales that ended by now are in it
        sales = [
            _sale(s, u, sale)
            for s, u, sale in self.sim.ledger()
            if station in (None, s) and pump in (None, u)
        ]
        return {"sales": sales}

    def _stats(self, a: Args, now_s: float) -> dict[str, Any]:
        extra = self._statistics() if self._statistics is not None else {}
        return {"simulation": self.sim.statistics(), "control": self.statistics(), **extra}
