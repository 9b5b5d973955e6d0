"""The one logging setup of every fuelswitch process: structlog, JSON lines in production.

``configure_logging`` is called once at start (``fuelswitch serve``, the simulators through
``ops.process.configure_stderr_logs``). Each line carries an ISO-8601 UTC timestamp, the level,
the logger's name (``structlog.get_logger(name)``), the event, whatever was bound in contextvars
(``order_id``, ``station``, ``pump``, ``channel``, ``request_id``: actors bind theirs in
``init``, the HTTP middleware per request) and the call's own keys. Records of libraries that log
through the standard library (hypercorn, asyncpg) go through the same renderer, so that a log
shipper reading JSON never meets a stray text line.

Secrets are removed before rendering, by rules written as data (:data:`SECRET_WORDS`,
:data:`SECRET_PHRASES`): a key naming a secret has its value replaced by ``***`` at any depth
of nested dicts and lists, and a password inside a URL (``postgresql://user:pw@host``) is
masked wherever a string carries one. Tracebacks are rendered as plain text without local
variables, which could hold a key.

``set_level`` changes the level at run time (the admin socket's ``log_level``): for every
logger, or for one name and the names under it (``orders`` covers ``orders.x``). structlog's
filtering loggers skip a disabled level at the cost of one method call, so the process-wide
minimum is built into the logger class, and a per-name override is a cheap check in the chain.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "FORMATS",
    "LEVELS",
    "REDACTED",
    "SECRET_PHRASES",
    "SECRET_WORDS",
    "configure_logging",
    "current_level",
    "redact",
    "set_level",
]

LEVELS: Final[Mapping[str, int]] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS: Final = ("auto", "json", "console")
REDACTED: Final = "***"

# A key is secret when one of its words (split at _ - . and camelCase) is one of these...
SECRET_WORDS: Final = frozenset(
    {
        "secret",
        "password",
        "passwd",
        "passphrase",
        "token",
        "authorization",
        "signature",
        "sign",
        "apikey",
        "credential",
        "credentials",
        "cookie",
    }
)
# ... or when its words, joined by "_", contain one of these.
SECRET_PHRASES: Final = ("private_key", "api_key", "apiv3_key", "api_v3_key", "key_pem")
# ... unless its last word says it is about the secret, not the secret: token_ttl_s, sign_type.
_ABOUT_WORDS: Final = frozenset({"s", "ms", "ttl", "type", "count", "len", "length", "at"})
# Certificate serial numbers are not secret: WeChat Pay sends them in every request header.

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[_\-. ]+")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")
_MAX_DEPTH = 8

# Method names structlog passes to processors -> their level.
_METHOD_LEVELS: Final[Mapping[str, int]] = {
    **LEVELS,
    "warn": logging.WARNING,
    "exception": logging.ERROR,
    "err": logging.ERROR,
    "fatal": logging.CRITICAL,
    "failure": logging.ERROR,
}


def _is_secret(key: str, cache: dict[str, bool] = {}) -> bool:  # noqa: B006 (a memo)
    found = cache.get(key)
    if found is None:
        words = [w for w in _SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
        joined = "_".join(words)
        named = any(w in SECRET_WORDS for w in words) or any(p in joined for p in SECRET_PHRASES)
        found = named and not (len(words) > 1 and words[-1] in _ABOUT_WORDS)
        if len(cache) < 4096:
            cache[key] = found
    return found


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _URL_PASSWORD.sub(rf"\g<head>{REDACTED}@", value) if "://" in value else value
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _is_secret(k) else _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        cleaned = [_clean(v, depth + 1) for v in value]
        return cleaned if isinstance(value, list) else tuple(cleaned)
    return value


def redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """The processor: secret keys' values become ``***``; URL passwords are masked."""
    for key, value in event_dict.items():
        if _is_secret(key):
            event_dict[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = _clean(value, 0)
    return event_dict


# -- levels ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Levels:
    root: int = logging.INFO
    by_name: dict[str, int] = field(default_factory=dict)
    memo: dict[str, int] = field(default_factory=dict)

    def threshold(self, name: str) -> int:
        found = self.memo.get(name)
        if found is None:
            found = self.root
            best = -1
            for prefix, level in self.by_name.items():
                if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                    found, best = level, len(prefix)
            self.memo[name] = found
        return found

    def minimum(self) -> int:
        return min([self.root, *self.by_name.values()])


_LEVELS = _Levels()


def _level_number(level: str) -> int:
    number = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if number is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    return number


def _level_name(number: int) -> str:
    return next(name for name, n in LEVELS.items() if n == number)


def _filter_by_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Drop what a per-name level excludes (only consulted once a name has a level)."""
    if _LEVELS.by_name:
        level = _METHOD_LEVELS.get(method, logging.INFO)
        if level < _LEVELS.threshold(getattr(logger, "name", "") or ""):
            raise structlog.DropEvent
    return event_dict


def _apply_levels() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.minimum()))
    logging.getLogger().setLevel(_LEVELS.root)
    for name, level in _LEVELS.by_name.items():
        logging.getLogger(name).setLevel(level)


def set_level(level: str, logger: str = "") -> str:
    """Log ``level`` and above, everywhere (``logger=""``) or for one logger name and the
    names under it; the canonical level name. ``ValueError`` for an unknown level."""
    number = _level_number(level)
    if logger:
        _LEVELS.by_name[logger] = number
    else:
        _LEVELS.root = number
    _LEVELS.memo.clear()
    _apply_levels()
    return _level_name(number)


def current_level(logger: str = "") -> str:
    """The level in force for ``logger`` (the process-wide one for ``""``)."""
    return _level_name(_LEVELS.threshold(logger) if logger else _LEVELS.root)


# -- output ----------------------------------------------------------------------------------


class _Sink:
    """One stream, shared by every logger: whole lines, under a lock (threads log too)."""

    def __init__(self, stream: IO[str] | IO[bytes]) -> None:
        self.stream = stream
        buffer = getattr(stream, "buffer", None)
        self._binary: IO[bytes] | None = buffer
        self._is_binary = buffer is None and (
            isinstance(stream, io.RawIOBase | io.BufferedIOBase)
            or "b" in getattr(stream, "mode", "")
        )
        self._lock = threading.Lock()

    def write(self, line: str | bytes) -> None:
        """Write one line; a stream that fails (closed, full disk) loses the line rather than
        failing the code that logged it."""
        with self._lock, contextlib.suppress(OSError, ValueError):
            stream: Any = self.stream
            if isinstance(line, bytes):
                if self._binary is not None:
                    stream.flush()  # whatever was printed as text goes first
                    self._binary.write(line + b"\n")
                    self._binary.flush()
                    return
                line = line.decode()
            if self._is_binary:
                stream.write(line.encode() + b"\n")
            else:
                stream.write(line + "\n")
            stream.flush()


class _LineLogger:
    """What structlog calls the wrapped logger: writes a rendered line, knows its name."""

    __slots__ = ("name", "sink")

    def __init__(self, name: str, sink: _Sink) -> None:
        self.name = name
        self.sink = sink

    def msg(self, message: str | bytes) -> None:
        self.sink.write(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


@dataclass(frozen=True, slots=True)
class _LoggerFactory:
    sink: _Sink

    def __call__(self, *args: Any) -> _LineLogger:
        name = args[0] if args and isinstance(args[0], str) else ""
        return _LineLogger(name, self.sink)


class _StdlibHandler(logging.Handler):
    """Standard-library records, rendered by the same chain into the same sink."""

    def __init__(self, sink: _Sink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.write(self.format(record))
        except Exception:
            self.handleError(record)


def _add_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")
    name = record.name if record is not None else getattr(logger, "name", "")
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def _dumps(value: Any, **options: Any) -> bytes:
    """orjson, tolerant: integer dict keys allowed, anything unknown as its repr; a log call
    must never raise into the code that made it."""
    options.pop("default", None)
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an int beyond 64 bits
        return orjson.dumps({str(k): repr(v) for k, v in value.items()})


def _is_tty(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # closed
        return False


_LEAD: Final = ("timestamp", "level", "logger", "event")


def _lead_keys(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Timestamp, level, logger and event first: a person reads JSON lines too."""
    ordered = {k: event_dict.pop(k) for k in _LEAD if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _renderer(fmt: str, stream: Any, *, text: bool) -> list[Processor]:
    if fmt == "json":
        if text:
            return [
                _lead_keys,
                structlog.processors.JSONRenderer(
                    serializer=lambda value, **kw: _dumps(value, **kw).decode()
                ),
            ]
        return [_lead_keys, structlog.processors.JSONRenderer(serializer=_dumps)]
    return [
        structlog.dev.ConsoleRenderer(
            colors=_is_tty(stream), exception_formatter=structlog.dev.plain_traceback
        )
    ]


def configure_logging(
    format: str = "auto",  # the config file's word (shadows the builtin here only)
    level: str = "info",
    stream: IO[str] | IO[bytes] | None = None,
) -> None:
    """Send structlog's and the standard library's logs to ``stream`` (default: the current
    ``sys.stderr``) as JSON lines (``"json"``), readable text (``"console"``, colours only on
    a terminal), or JSON unless the stream is a terminal (``"auto"``), from ``level`` up."""
    if format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {format!r}")
    number = _level_number(level)
    out: Any = sys.stderr if stream is None else stream
    fmt = format if format != "auto" else ("console" if _is_tty(out) else "json")
    sink = _Sink(out)
    shared: list[Processor] = [
        structlog.processors.add_log_level,
        _add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redact,
    ]
    structlog.configure(
        processors=[
            _filter_by_name,
            structlog.contextvars.merge_contextvars,
            *shared,
            *tail,
            *_renderer(fmt, out, text=False),
        ],
        logger_factory=_LoggerFactory(sink),
        # No caching: a level set later must reach the module-level loggers made before.
        cache_logger_on_first_use=False,
    )
    handler = _StdlibHandler(sink)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.contextvars.merge_contextvars, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                *_renderer(fmt, out, text=True),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    for name in _LEVELS.by_name:  # a new setup starts without the old per-name levels
        logging.getLogger(name).setLevel(logging.NOTSET)
    _LEVELS.root = number
    _LEVELS.by_name.clear()
    _LEVELS.memo.clear()
    _apply_levels()
