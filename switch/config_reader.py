"""Typed reads from a parsed TOML table, every error naming its key path.

``load_config`` reads each table through a :class:`Table`: it takes the keys it knows with
their expected types, and ``done()`` then refuses whatever is left, suggesting the nearest
valid key, because a misspelt ``customer_pay_timout_s`` silently falling back to its default
is the kind of mistake that only shows in production.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["MISSING", "ConfigError", "Table", "key_path"]

MISSING: Final[Any] = object()
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message starts with its key path."""


def key_path(parent: str, key: str) -> str:
    part = key if _BARE_KEY.fullmatch(key) else f'"{key}"'
    return f"{parent}.{part}" if parent else part


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


class Table:
    """One TOML table and the keys read from it so far."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected a table, got {_describe(raw)}")
        self.raw: Mapping[str, Any] = raw
        self.path = path
        self._known: list[str] = []

    def at(self, key: str) -> str:
        return key_path(self.path, key)

    def _get(self, key: str, default: Any) -> Any:
        self._known.append(key)
        if key in self.raw:
            return self.raw[key]
        if default is MISSING:
            raise ConfigError(f"{self.at(key)}: missing")
        return default

    def value(self, key: str, default: Any = MISSING) -> Any:
        return self._get(key, default)

    def text(self, key: str, default: Any = MISSING, *, empty: bool = True) -> str:
        value = self._get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.at(key)}: expected a string, got {_describe(value)}")
        if not empty and not value:
            raise ConfigError(f"{self.at(key)}: must not be empty")
        return value

    def integer(
        self,
        key: str,
        default: Any = MISSING,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        what: str = "an integer",
    ) -> int:
        value = self._get(key, default)
        if type(value) is not int:
            raise ConfigError(f"{self.at(key)}: expected {what}, got {_describe(value)}")
        return self.check_range(key, value, minimum, maximum)

    def seconds(self, key: str, default: Any = MISSING, *, positive: bool = True) -> float:
        """A duration: an integer or a float number of seconds."""
        value = self._get(key, default)
        if type(value) not in (int, float):
            raise ConfigError(
                f"{self.at(key)}: expected seconds (a number), got {_describe(value)}"
            )
        if value < 0 or (positive and value == 0) or value != value or value == float("inf"):
            limit = "positive" if positive else "at least 0"
            raise ConfigError(f"{self.at(key)}: must be {limit} and finite, not {value!r}")
        return float(value)

    def flag(self, key: str, default: Any = MISSING) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.at(key)}: expected true or false, got {_describe(value)}")
        return value

    def table(self, key: str, default: Any = MISSING) -> Table:
        return Table(self._get(key, default), self.at(key))

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``); absent = empty."""
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ConfigError(f"{self.at(key)}: expected an array of tables ([[{key}]])")
        return [Table(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]

    def texts(self, key: str, default: Any = MISSING) -> tuple[str, ...]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.at(key)}: expected a list of strings, got {_describe(value)}")
        return tuple(value)

    def e6(self, key: str, limit: int) -> int:
        """A decimal-degree string as exact integer micro-degrees (no float in between)."""
        value = self._get(key, MISSING)
        if not isinstance(value, str):
            raise ConfigError(
                f'{self.at(key)}: expected a decimal string such as "31.230416", '
                f"got {_describe(value)}"
            )
        try:
            scaled = Decimal(value.strip()) * 1_000_000
        except InvalidOperation:
            raise ConfigError(f"{self.at(key)}: {value!r} is not a decimal number") from None
        if not scaled.is_finite() or scaled != scaled.to_integral_value():
            raise ConfigError(f"{self.at(key)}: {value!r} has more than 6 decimal places")
        e6 = int(scaled)
        if abs(e6) > limit * 1_000_000:
            raise ConfigError(f"{self.at(key)}: {value} is outside -{limit}..{limit}")
        return e6

    def check_range(self, key: str, value: int, minimum: int | None, maximum: int | None) -> int:
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.at(key)}: must be at least {minimum}, not {value}")
        if maximum is not None and value > maximum:
            raise ConfigError(f"{self.at(key)}: must be at most {maximum}, not {value}")
        return value

    def done(self) -> None:
        """Refuse keys nobody read."""
        for key in self.raw:
            if key not in self._known:
                near = difflib.get_close_matches(key, self._known, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                valid = ", ".join(self._known) or "none"
                raise ConfigError(f"{self.at(key)}: unknown key{hint} (valid: {valid})")
