"""The ``fuelswitch ops`` subcommands as data: words, wire command, arguments, view.

Each :class:`Verb` says how its command-line arguments become the request's arguments
and which view of :mod:`ops.render` shows the result. Most need no code of their own;
the few that do (prices, drain, and the commands that walk pages) name a function.
"""

from __future__ import annotations

import argparse
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ops.admin import MAX_TREE_LIMIT, AdminClient

__all__ = ["VERBS", "Argument", "UsageError", "Verb", "parse_price", "parse_prices"]

_MILLI_FEN_PER_YUAN = 100_000
# Yuan per litre, at most 3 decimals (0.001 yuan = 100 milli-fen: still an integer).
_PRICE = re.compile(r"(0|[1-9]\d{0,5})(\.\d{1,3})?")
_GRADE = re.compile(r"[^\s=]{1,32}")


class UsageError(Exception):
    """Bad command-line input the parser could not catch: exit status 2."""


def parse_price(text: str) -> int:
    """``"7.89"`` (yuan per litre) as 789000 milli-fen per litre, with decimal arithmetic."""
    if not _PRICE.fullmatch(text):
        raise UsageError(
            f"price {text!r} is not yuan per litre with at most 3 decimals (e.g. 7.89)"
        )
    milli_fen = Decimal(text) * _MILLI_FEN_PER_YUAN
    if milli_fen != milli_fen.to_integral_value() or milli_fen <= 0:
        raise UsageError(f"price {text!r} must be positive")
    return int(milli_fen)


def parse_prices(items: list[str]) -> dict[str, int]:
    """``["92=7.89", "95=8.45"]`` as ``{"92": 789000, "95": 845000}``."""
    prices: dict[str, int] = {}
    for item in items:
        grade, sep, price = item.partition("=")
        if not sep or not _GRADE.fullmatch(grade):
            raise UsageError(f"{item!r} is not GRADE=PRICE (e.g. 92=7.89)")
        if grade in prices:
            raise UsageError(f"grade {grade!r} is given twice")
        prices[grade] = parse_price(price)
    return prices


@dataclass(frozen=True, slots=True)
class Argument:
    """One argparse argument; ``wire`` names the request argument it fills ("": none)."""

    flags: tuple[str, ...]  # ("--limit",) for an option, ("station",) for a positional
    wire: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    @property
    def dest(self) -> str:
        """Prefixed, so that no argument can clash with the global options' names."""
        return "arg_" + self.flags[0].lstrip("-").replace("-", "_")


Build = Callable[[argparse.Namespace, "Verb"], dict[str, Any]]
Fetch = Callable[[AdminClient, "Verb", dict[str, Any], argparse.Namespace], Awaitable[Any]]


def build_plain(ns: argparse.Namespace, verb: Verb) -> dict[str, Any]:
    """Every argument given on the command line; the server fills the defaults of the rest."""
    args: dict[str, Any] = {}
    for argument in verb.arguments:
        value = getattr(ns, argument.dest, None)
        if argument.wire and value is not None:
            args[argument.wire] = value
    return args


def build_prices(ns: argparse.Namespace, verb: Verb) -> dict[str, Any]:
    args = {"station": ns.arg_station, "prices": parse_prices(ns.arg_prices)}
    if ns.arg_at is not None:
        args["at"] = ns.arg_at
    return args


def build_drain(ns: argparse.Namespace, verb: Verb) -> dict[str, Any]:
    return {"on": not ns.arg_off}


def _advance(offset: int, following: Any) -> int | None:
    """The next page's offset; None at the end, or when a server would send us round again."""
    return following if isinstance(following, int) and following > offset else None


async def fetch_one(
    client: AdminClient, verb: Verb, args: dict[str, Any], ns: argparse.Namespace
) -> Any:
    return await client.call(verb.wire, args)


async def fetch_pages(
    client: AdminClient, verb: Verb, args: dict[str, Any], ns: argparse.Namespace
) -> Any:
    """Every page, merged into one result as if it had come in one reply."""
    key = verb.view
    rows: list[Any] = []
    offset: int | None = 0
    result: dict[str, Any] = {}
    while offset is not None:
        result = await client.call(verb.wire, {**args, "offset": offset})
        rows.extend(result.get(key, []))
        offset = _advance(offset, result.get("next_offset"))
    return {**result, key: rows, "offset": 0, "next_offset": None}


async def fetch_tree(
    client: AdminClient, verb: Verb, args: dict[str, Any], ns: argparse.Namespace
) -> Any:
    """One page, or with ``--all`` every page of every supervisor below, breadth first,
    merged into one page of every actor below the supervisor."""
    if not ns.arg_all:
        return await client.call("tree", args)
    limit = args.get("limit", MAX_TREE_LIMIT)
    pending = deque([args.get("supervisor", "")])
    root: Any = None
    actors: list[Any] = []
    while pending:
        supervisor = pending.popleft()
        offset: int | None = args.get("offset", 0) if root is None else 0
        while offset is not None:
            request = {"supervisor": supervisor, "offset": offset, "limit": limit}
            page = await client.call("tree", request)
            root = page["supervisor"] if root is None else root
            for child in page["children"]:
                actors.append(child)
                if child.get("supervisor"):
                    pending.append(child["address"])
            offset = _advance(offset, page["next_offset"])
    # Shaped as one tree page whose children are every actor below, so it shows the same.
    return {
        "supervisor": root,
        "children": actors,
        "offset": 0,
        "total": len(actors),
        "next_offset": None,
    }


@dataclass(frozen=True, slots=True)
class Verb:
    words: tuple[str, ...]  # ("pump", "close"): `fuelswitch ops pump close ...`
    wire: str  # the admin command
    help: str
    arguments: tuple[Argument, ...] = ()
    view: str = "result"  # a key of ops.render.VIEWS
    read: bool = True  # may be watched; actions may not
    build: Build = build_plain
    fetch: Fetch = fetch_one


def _arg(*flags: str, wire: str | None = None, **options: Any) -> Argument:
    """An argument that fills the request argument of its own name unless ``wire`` says."""
    return Argument(
        flags, flags[0].lstrip("-").replace("-", "_") if wire is None else wire, options
    )


_STATION = _arg("--station", metavar="S", help="only this station")
_REASON = _arg("--reason", metavar="R", help="recorded with the action (default: operator)")

VERBS: tuple[Verb, ...] = (
    Verb(
        ("commands",),
        "help",
        "the commands the switch offers, with their parameters",
        view="help",
    ),
    Verb(
        ("status",), "status", "the switch: pid, uptime, draining, in-flight orders", view="status"
    ),
    Verb(
        ("tree",),
        "tree",
        "a supervisor and a page of its children (--all: the whole tree below it)",
        (
            _arg("supervisor", nargs="?", metavar="SUPERVISOR", help="address (default: root)"),
            _arg("--offset", type=int, metavar="N", help="first child of the page"),
            _arg(
                "--limit", type=int, metavar="N", help=f"children per page (max {MAX_TREE_LIMIT})"
            ),
            _arg("--all", wire="", action="store_true", help="walk every page, breadth first"),
        ),
        view="tree",
        fetch=fetch_tree,
    ),
    Verb(
        ("actor",),
        "actor",
        "one actor's snapshot",
        (_arg("address", metavar="ADDRESS", help="e.g. stations/s001/p03"),),
        view="actor",
    ),
    Verb(
        ("pumps",), "pumps", "every pump (all pages)", (_STATION,), view="pumps", fetch=fetch_pages
    ),
    Verb(("channels",), "channels", "payment channels: health, share, fees", view="channels"),
    Verb(
        ("orders",),
        "orders",
        "open (non-terminal) orders",
        (_STATION, _arg("--limit", type=int, metavar="N", help="at most N (default 100)")),
        view="orders",
    ),
    Verb(
        ("alerts",),
        "alerts",
        "recent alerts, newest first",
        (_arg("--limit", type=int, metavar="N", help="at most N (default 100)"),),
        view="alerts",
    ),
    Verb(
        ("restart",),
        "restart",
        "restart one actor through its supervisor",
        (_arg("address", metavar="ADDRESS"),),
        read=False,
    ),
    *(
        Verb(
            ("pump", action),
            f"pump.{action}",
            text,
            (
                _arg("station", metavar="STATION"),
                _arg("pump", type=int, metavar="PUMP"),
                _REASON,
            ),
            read=False,
        )
        for action, text in (
            ("close", "close a pump: no new sales"),
            ("open", "open a closed pump again"),
            ("stop", "emergency stop: halt fuelling at once"),
        )
    ),
    Verb(
        ("prices", "set"),
        "prices.set",
        "set a station's prices (yuan per litre, e.g. 92=7.89)",
        (
            _arg("station", metavar="STATION"),
            _arg("prices", nargs="+", metavar="GRADE=PRICE"),
            _arg("--at", metavar="ISO", help="when they take effect (default: now)"),
        ),
        view="prices.set",
        read=False,
        build=build_prices,
    ),
    *(
        Verb(
            ("channel", action),
            f"channel.{action}",
            f"{action} a payment channel",
            (_arg("name", metavar="NAME"), _REASON),
            read=False,
        )
        for action in ("enable", "disable")
    ),
    Verb(
        ("drain",),
        "drain",
        "stop taking new orders (--off: take them again)",
        (_arg("--off", wire="", action="store_true", help="end draining"),),
        read=False,
        build=build_drain,
    ),
    Verb(
        ("log-level",),
        "log_level",
        "change the log level at run time",
        (
            _arg("level", choices=("debug", "info", "warning", "error", "critical")),
            _arg("--logger", metavar="L", help="one logger (default: all)"),
        ),
        read=False,
    ),
)
