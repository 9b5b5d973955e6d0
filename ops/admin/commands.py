"""Commands declared as data: a name, a handler, typed parameters, and whether it acts.

The server checks a request's arguments against the declaration before the handler
runs, so handlers receive exactly their parameters, of the declared types, with
defaults filled in, and never validate shapes themselves. ``help`` is built from the
same declarations, which is how the command line discovers what a server offers.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .protocol import AdminError, BadArgsError, Caller, ErrorCode

__all__ = ["KINDS", "Command", "CommandTable", "Handler", "Param"]

Handler = Callable[[Mapping[str, Any], Caller], Awaitable[Any]]

KINDS: dict[type, str] = {
    str: "str",
    int: "int",
    bool: "bool",
    float: "float",
    list: "list",
    dict: "dict",
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: type
    required: bool = False
    default: Any = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"param {self.name!r}: kind must be one of {', '.join(KINDS.values())}"
            )

    def check(self, value: Any) -> Any:
        """``value`` if it has the declared kind, else ``bad_args`` naming the parameter.

        ``True`` is not an int here (msgpack keeps them apart, so must we); an int is a
        fine float.
        """
        kind = self.kind
        if kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise BadArgsError(
                f"argument {self.name!r} must be {KINDS[kind]}, not {_kind_of(value)}"
            )
        return value

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": KINDS[self.kind],
            "required": self.required,
            "default": self.default,
            "help": self.help,
        }


def _kind_of(value: Any) -> str:
    return "nil" if value is None else KINDS.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    params: tuple[Param, ...] = ()
    action: bool = False  # changes something: audited
    help: str = ""

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"command {self.name!r} declares a parameter twice")

    def bind(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """The handler's arguments: checked, with defaults filled (a fresh copy each time)."""
        known = {p.name for p in self.params}
        unknown = sorted(set(args) - known)
        if unknown:
            raise BadArgsError(
                f"unknown argument {unknown[0]!r} for {self.name!r}"
                + (f" (takes {', '.join(sorted(known))})" if known else " (takes none)")
            )
        bound: dict[str, Any] = {}
        for param in self.params:
            if param.name in args:
                bound[param.name] = param.check(args[param.name])
            elif param.required:
                raise BadArgsError(f"missing argument {param.name!r} for {self.name!r}")
            else:
                bound[param.name] = copy.deepcopy(param.default)
        return bound

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "action": self.action,
            "help": self.help,
            "params": [p.describe() for p in self.params],
        }


class CommandTable:
    """Commands by name, with the built-in ``help``."""

    def __init__(self, commands: Iterable[Command]) -> None:
        self._commands: dict[str, Command] = {}
        help_command = Command(
            "help", self._help, help="list the commands this server offers, with their parameters"
        )
        for command in (help_command, *commands):
            if command.name in self._commands:
                raise ValueError(f"command {command.name!r} is declared twice")
            self._commands[command.name] = command

    def lookup(self, name: str) -> Command:
        command = self._commands.get(name)
        if command is None:
            raise AdminError(ErrorCode.UNKNOWN_COMMAND, f"unknown command {name!r} (try 'help')")
        return command

    def __contains__(self, name: str) -> bool:
        return name in self._commands

    def describe(self) -> list[dict[str, Any]]:
        return [c.describe() for c in sorted(self._commands.values(), key=lambda c: c.name)]

    async def _help(self, args: Mapping[str, Any], caller: Caller) -> Any:
        return {"commands": self.describe()}
