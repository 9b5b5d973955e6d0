"""The admin socket's messages: requests, replies, error codes and the wire conversion.

Sans-IO like the frame codec: bytes in, typed values out. The server turns every
way a request can be wrong into one :class:`AdminError` with a stable code, so that
the client (and a script reading ``--json``) can branch on the code, not the text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import msgpack

__all__ = [
    "AdminError",
    "BadArgsError",
    "Caller",
    "ConflictError",
    "ErrorCode",
    "NotFoundError",
    "Reply",
    "Request",
    "UnavailableError",
    "pack",
    "parse_reply",
    "parse_request",
    "to_wire",
    "unpack",
]


class ErrorCode(enum.StrEnum):
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    FORBIDDEN = "forbidden"
    FAILED = "failed"


class AdminError(Exception):
    """An expected failure a handler reports: the reply carries ``code`` and ``message``.

    ``request_id`` is only set by request parsing, for the id a malformed request still had.
    """

    def __init__(self, code: str, message: str, *, request_id: int = 0) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.request_id = request_id

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFoundError(AdminError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.NOT_FOUND, message)


class ConflictError(AdminError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.CONFLICT, message)


class UnavailableError(AdminError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


class BadArgsError(AdminError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.BAD_ARGS, message)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is on the other end, as the kernel says (SO_PEERCRED), not as the peer claims."""

    uid: int
    pid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    cmd: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    ok: bool
    result: Any = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def success(cls, request_id: int, result: Any) -> Reply:
        return cls(request_id, True, result)

    @classmethod
    def failure(cls, request_id: int, code: str, message: str) -> Reply:
        return cls(request_id, False, code=str(code), message=message)

    def to_map(self) -> dict[str, Any]:
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result}
        return {"id": self.id, "ok": False, "error": {"code": self.code, "message": self.message}}


def pack(value: Any) -> bytes:
    """msgpack with str as str and bytes as bin; the value must already be wire types."""
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """One msgpack value that fills ``data`` exactly; any failure is a ValueError."""
    try:
        return msgpack.unpackb(data, raw=False, use_list=True)
    except ValueError:
        raise
    except Exception as exc:  # msgpack's own errors are not all ValueErrors
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_request(frame: bytes) -> Request:
    """A request frame as a :class:`Request`, or ``AdminError("malformed")``.

    ``args`` may be left out (no arguments); unknown top-level keys are ignored.
    """
    try:
        value = unpack(frame)
    except ValueError as exc:
        raise AdminError(ErrorCode.MALFORMED, f"not msgpack: {exc}") from None
    if not isinstance(value, dict):
        raise AdminError(ErrorCode.MALFORMED, f"a request is a map, not {type(value).__name__}")
    request_id = value.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise AdminError(ErrorCode.MALFORMED, "missing or non-integer field 'id'")
    cmd = value.get("cmd")
    if not isinstance(cmd, str):
        raise AdminError(
            ErrorCode.MALFORMED, "missing or non-string field 'cmd'", request_id=request_id
        )
    args = value.get("args", {})
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        message = "field 'args' must be a map with string keys"
        raise AdminError(ErrorCode.MALFORMED, message, request_id=request_id)
    return Request(request_id, cmd, args)


def parse_reply(frame: bytes) -> Reply:
    """A reply frame as a :class:`Reply`; ``ValueError`` when it is not one."""
    value = unpack(frame)
    if not isinstance(value, dict) or not _is_int(value.get("id")):
        raise ValueError("a reply is a map with an integer 'id'")
    if value.get("ok") is True:
        return Reply.success(value["id"], value.get("result"))
    error = value.get("error")
    if value.get("ok") is not False or not isinstance(error, dict):
        raise ValueError("a reply has ok=true and a result, or ok=false and an error map")
    return Reply.failure(value["id"], str(error.get("code")), str(error.get("message")))


_SCALARS = (str, int, float, bool, bytes, type(None))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def to_wire(value: Any) -> Any:
    """``value`` as msgpack-able data: dataclasses become maps, enums their values, tuples and
    sets lists, paths and decimals strings, datetimes ISO 8601; bytes stay bytes.

    Anything else becomes ``str(value)``: an odd object in some actor's state must not make
    the whole ``tree`` page fail.
    """
    if isinstance(value, enum.Enum):
        return to_wire(value.value)
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        return str(value)  # msgpack integers are 64-bit
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return {_key(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_wire(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath | Decimal):
        return str(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value)


def _key(key: Any) -> Any:
    wire = to_wire(key)
    return wire if isinstance(wire, str | int) else str(wire)
