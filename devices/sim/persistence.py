"""What survives a power cycle, as JSON: (de)serializers and the station file.

Everything is integers, strings, booleans and lists, so a file written on one machine
reads the same anywhere; readers validate every field and raise ValueError on anything
else. :class:`StationFile` keeps all of a simulator's points in one file, replaced atomically
(write a temporary file, fsync it, ``os.replace``, fsync the directory): after a crash at
any moment the file holds either the old or the new content, never a mix. Its I/O is
blocking; a trio server calls it through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from devices.gfd1.states import EndReason, Mode, PresetType, SaleState

from .records import U16, U32, NozzleSpec, PointSpec, Sale, SimSettings

FORMAT: Final = 1  # of one point's dictionary
FILE_FORMAT: Final = 2  # of the station file (format 1 held one station's points)
U64: Final = (1 << 64) - 1


class Reader:
    """Typed, validated access to one decoded JSON object."""

    def __init__(self, data: Mapping[str, Any], what: str) -> None:
        if not isinstance(data, Mapping):
            raise ValueError(f"{what}: expected an object, got {type(data).__name__}")  # noqa: TRY004
        self._data, self._what = data, what

    def _get(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise ValueError(f"{self._what}: missing {key!r}") from None

    def _bad(self, key: str, value: Any) -> ValueError:
        return ValueError(f"{self._what}: bad {key!r}: {value!r}")

    def integer(self, key: str, top: int = U64) -> int:
        value = self._get(key)
        if type(value) is not int or not 0 <= value <= top:
            raise self._bad(key, value)
        return value

    def ints(self, key: str, count: int, top: int = U64) -> list[int]:
        values = self._get(key)
        if (
            not isinstance(values, list)
            or len(values) != count
            or any(type(v) is not int or not 0 <= v <= top for v in values)
        ):
            raise self._bad(key, values)
        return list(values)

    def boolean(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._bad(key, value)
        return value

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._bad(key, value)
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._bad(key, value)
        return value

    def mappings(self, key: str) -> list[Mapping[str, Any]]:
        values = self._get(key)
        if not isinstance(values, list) or not all(isinstance(v, Mapping) for v in values):
            raise self._bad(key, values)
        return list(values)


def spec_to_dict(spec: PointSpec) -> dict[str, Any]:
    return {
        "nozzles": [{"grade": n.grade, "price": n.price} for n in spec.nozzles],
        "identity": spec.identity,
        "price_set_id": spec.price_set_id,
        "flow_min_ml_s": spec.flow_min_ml_s,
        "flow_max_ml_s": spec.flow_max_ml_s,
        "ramp_ms": spec.ramp_ms,
        "flow_delay_ms": spec.flow_delay_ms,
    }


def spec_from_dict(data: Mapping[str, Any]) -> PointSpec:
    r = Reader(data, "spec")
    nozzles = []
    for nozzle in r.mappings("nozzles"):
        n = Reader(nozzle, "nozzle")
        nozzles.append(NozzleSpec(n.integer("grade", U16), n.integer("price", U32)))
    return PointSpec(
        nozzles=tuple(nozzles),
        identity=r.text("identity"),
        price_set_id=r.integer("price_set_id", U16),
        flow_min_ml_s=r.integer("flow_min_ml_s"),
        flow_max_ml_s=r.integer("flow_max_ml_s"),
        ramp_ms=r.integer("ramp_ms"),
        flow_delay_ms=r.integer("flow_delay_ms"),
    )


def settings_to_dict(settings: SimSettings) -> dict[str, Any]:
    return {
        "host_watchdog_s": settings.host_watchdog_s,
        "max_unpaid": settings.max_unpaid,
        "auth_timeout_s": settings.auth_timeout_s,
        "mode": int(settings.mode),
    }


def settings_from_dict(data: Mapping[str, Any]) -> SimSettings:
    r = Reader(data, "settings")
    try:
        mode = Mode(r.integer("mode", U16))
    except ValueError:
        raise ValueError(f"settings: bad mode {data.get('mode')!r}") from None
    return SimSettings(
        r.integer("host_watchdog_s", U16),
        r.integer("max_unpaid", U16),
        r.integer("auth_timeout_s", U16),
        mode,
    )


_SALE_INTS: Final = (
    "seq",
    "nozzle",
    "volume_ml",
    "amount_fen",
    "unit_price",
    "start_volume_total_ml",
    "end_volume_total_ml",
    "start_amount_total_fen",
    "end_amount_total_fen",
    "auth_token",
    "preset_value",
    "price_set_id",
)


def sale_to_dict(sale: Sale) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(sale, name) for name in _SALE_INTS}
    data.update(
        end_reason=int(sale.end_reason),
        preset_type=int(sale.preset_type),
        state=int(sale.state),
    )
    return data


def sale_from_dict(data: Mapping[str, Any]) -> Sale:
    r = Reader(data, "sale")
    values = {name: r.integer(name) for name in _SALE_INTS}
    try:
        return Sale(
            end_reason=EndReason(r.integer("end_reason")),
            preset_type=PresetType(r.integer("preset_type")),
            state=SaleState(r.integer("state")),
            **values,
        )
    except ValueError as exc:
        raise ValueError(f"sale: {exc}") from None


class Persistent(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


PointKey = tuple[int, int]  # (station index, unit id)


class StationFile:
    """A simulator's non-volatile memory: every point's ``to_dict()`` by (station, unit).

    The document is ``{"format": 2, "stations": {"0": {"1": {...point...}, ...}, ...}}``.
    Writing is split so that a trio server takes the snapshot in its own thread (the
    points are never read while they change) and only the disk I/O in a worker thread:
    ``payload = sf.encode(points)`` then ``await trio.to_thread.run_sync(sf.write_bytes,
    payload)``. :meth:`write` does both, blocking.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def encode(self, points: Mapping[PointKey, Persistent]) -> bytes:
        stations: dict[str, dict[str, Any]] = {}
        for (station, unit), point in sorted(points.items()):
            stations.setdefault(str(station), {})[str(unit)] = point.to_dict()
        document = {"format": FILE_FORMAT, "stations": stations}
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    def write(self, points: Mapping[PointKey, Persistent]) -> None:
        """Replace the file atomically and durably with the points' current state."""
        self.write_bytes(self.encode(points))

    def write_bytes(self, payload: bytes) -> None:
        """Replace the file atomically and durably with ``payload`` (from :meth:`encode`)."""
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> dict[PointKey, dict[str, Any]]:
        """Each point's saved state by (station, unit); empty if the file does not exist
        yet. Build the points with ``FuellingPoint.from_dict``."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{self.path}: not JSON: {exc}") from None
        r = Reader(document, str(self.path))
        if r.integer("format") != FILE_FORMAT:
            raise ValueError(f"{self.path}: unsupported format {document.get('format')!r}")
        points: dict[PointKey, dict[str, Any]] = {}
        for station, units in r.mapping("stations").items():
            if not _is_index(station, 65535) or not isinstance(units, dict):
                raise ValueError(f"{self.path}: bad station entry {station!r}")
            for unit, data in units.items():
                if not _is_index(unit, 255) or not isinstance(data, dict):
                    raise ValueError(f"{self.path}: bad point entry {station!r}/{unit!r}")
                points[int(station), int(unit)] = data
        return points


def _is_index(key: str, top: int) -> bool:
    return key.isascii() and key.isdigit() and int(key) <= top
