"""How ``fuelswitch ops`` shows results to people: column specs per command, as data.

A view is a sequence of parts: a table of rows found under a key of the result, a list of
fields, or a summary line. Each column names a key path and a format of
:mod:`ops.formats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ops.formats import FORMATS

__all__ = ["VIEWS", "Column", "Fields", "Rows", "Summary", "lookup", "render"]


def lookup(row: Any, key: str) -> Any:
    """``row["a"]["b"]`` for the key ``a.b``; None where a level is missing."""
    value = row
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    key: str  # dotted path into a row
    fmt: str = "text"  # a key of FORMATS

    def cell(self, row: Any) -> Text:
        # Text, not str: data such as "[Errno 111]" must not be read as rich markup.
        return Text(FORMATS[self.fmt](lookup(row, self.key)))


@dataclass(frozen=True, slots=True)
class Rows:
    """A table of the list at ``key`` (``""``: the result itself is the list)."""

    key: str
    columns: tuple[Column, ...]
    title: str = ""


@dataclass(frozen=True, slots=True)
class Fields:
    """Name/value lines for the map at ``key``; ``columns`` None shows every key (in ``fmt``).

    ``request`` reads the arguments that were sent instead of the result: a reply that
    only acknowledges can still be shown with what it acknowledged.
    """

    key: str = ""
    columns: tuple[Column, ...] | None = None
    title: str = ""
    fmt: str = "text"
    request: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    """One line from the result's fields (missing or None ones read as ``-``)."""

    template: str


Part = Rows | Fields | Summary


def _c(header: str, key: str | None = None, fmt: str = "text") -> Column:
    return Column(header, header if key is None else key, fmt)


_ACTOR_ROW = (
    _c("address"),
    _c("kind"),
    _c("status"),
    _c("restarts"),
    _c("depth", "mailbox.queued"),
    _c("children"),
    _c("uptime", "uptime_s", "age"),
    _c("handling"),
)
_PAGE = Summary("children {first}-{last} of {total}{more}")

VIEWS: dict[str, tuple[Part, ...]] = {
    "help": (
        Rows(
            "commands",
            (_c("command", "name"), _c("action"), _c("parameters", "params", "params"), _c("help")),
        ),
    ),
    "status": (
        Fields(
            columns=(
                _c("pid"),
                _c("uptime", "uptime_s", "age"),
                _c("draining"),
                _c("in-flight orders", "in_flight_orders"),
                _c("actors"),
                _c("http"),
                _c("version"),
            ),
            title="switch",
        ),
    ),
    "tree": (
        Rows("supervisor", (_c("supervisor", "address"), *_ACTOR_ROW[1:])),
        Rows("children", _ACTOR_ROW),
        _PAGE,
    ),
    "actor": (
        Fields(
            columns=(
                _c("address"),
                _c("kind"),
                _c("status"),
                _c("restart"),
                _c("incarnation"),
                _c("restarts"),
                _c("last exit", "last_exit"),
                _c("uptime", "uptime_s", "age"),
                _c("mailbox depth", "mailbox.queued"),
                _c("mailbox peak", "mailbox.peak"),
                _c("processed", "mailbox.processed"),
                _c("dropped", "mailbox.dropped"),
                _c("handling"),
                _c("handling for", "handling_for_s", "age"),
                _c("children"),
            ),
        ),
        Fields("state", title="state"),
    ),
    "pumps": (
        Rows(
            "pumps",
            (
                _c("station"),
                _c("pump"),
                _c("state"),
                _c("admin"),
                _c("open sale", "open_sale"),
                _c("sale state", "open_sale_state"),
                _c("payable"),
                _c("poll p50", "poll_latency_ms.p50_ms", "ms"),
                _c("poll p99", "poll_latency_ms.p99_ms", "ms"),
                _c("polls"),
                _c("alerts"),
                _c("price set", "price_set_id"),
                _c("last error", "last_error"),
            ),
        ),
        Summary("{total} pumps"),
    ),
    "channels": (
        Rows(
            "channels",
            (
                _c("name"),
                _c("provider"),
                _c("enabled"),
                _c("eligible"),
                _c("health"),
                _c("errors", "error_rate", "pct"),
                _c("approved", "approval_rate", "pct"),
                _c("share", "routing_share", "pct"),
                _c("decisions"),
                _c("fees today", "fees_fen", "money"),
                _c("in flight", "in_flight"),
                _c("waiting"),
                _c("disabled because", "disabled_reason"),
                _c("last error", "last_error"),
            ),
        ),
    ),
    "orders": (
        Rows(
            "orders",
            (
                _c("order", "order_id"),
                _c("station"),
                _c("pump"),
                _c("flow"),
                _c("state"),
                _c("channel"),
                _c("amount", "amount_fen", "money"),
                _c("created", "created_at"),
                _c("age", "age_s", "age"),
            ),
        ),
        Summary("{shown} of {total} open orders"),
    ),
    "alerts": (
        Rows(
            "alerts",
            (
                _c("at"),
                _c("source"),
                _c("severity"),
                _c("kind"),
                _c("subject"),
                _c("detail"),
            ),
        ),
    ),
    "prices.set": (
        Fields(
            columns=(
                _c("station"),
                _c("price set", "price_set_id"),
                _c("effective", "effective_at"),
            )
        ),
        Fields("prices", title="prices sent", fmt="price", request=True),
    ),
    "result": (Fields(),),  # actions: every field of the result
}


def _rows_of(result: Any, key: str) -> list[Any]:
    rows = result if key == "" else lookup(result, key)
    if isinstance(rows, Mapping):
        return [rows]
    return list(rows) if isinstance(rows, Sequence) and not isinstance(rows, str) else []


def _table(part: Rows, result: Any) -> Table:
    table = Table(title=part.title or None, title_justify="left")
    for column in part.columns:
        table.add_column(column.header, overflow="fold")
    for row in _rows_of(result, part.key):
        table.add_row(*(column.cell(row) for column in part.columns))
    return table


def _fields(part: Fields, data: Mapping[str, Any]) -> Table:
    columns = part.columns or tuple(Column(str(k), str(k), part.fmt) for k in data)
    table = Table(title=part.title or None, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for column in columns:
        table.add_row(Text(column.header), column.cell(data))
    return table


def _summary(part: Summary, result: Any) -> Text:
    values = dict(result) if isinstance(result, Mapping) else {}
    shown = 0
    for key in ("children", "pumps", "orders", "actors"):
        if isinstance(values.get(key), list):
            shown = len(values[key])
            break
    offset = values.get("offset")
    offset = offset if isinstance(offset, int) else 0
    values.setdefault("shown", shown)
    values["first"] = offset + 1 if shown else offset
    values["last"] = offset + shown
    following = values.get("next_offset")
    values["more"] = f"; next page: --offset {following}" if following is not None else ""
    cleaned = _Defaulted({k: "-" if v is None else v for k, v in values.items()})
    return Text(part.template.format_map(cleaned))


class _Defaulted(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "-"


def render(view: str, result: Any, sent: Mapping[str, Any] | None = None) -> RenderableType:
    """A command's result as a rich renderable, by the named view (unknown: every field).

    ``sent`` is the request's arguments, for views that show what was asked.
    """
    parts = VIEWS.get(view, VIEWS["result"])
    out: list[RenderableType] = []
    for part in parts:
        if isinstance(part, Rows):
            out.append(_table(part, result))
        elif isinstance(part, Fields):
            source = (sent or {}) if part.request else result
            data = source if part.key == "" else lookup(source, part.key)
            if isinstance(data, Mapping):
                out.append(_fields(part, data))
        else:
            out.append(_summary(part, result))
    return Group(*out)
