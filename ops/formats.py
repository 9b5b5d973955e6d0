"""Wire values as text for operators.

Money arrives as integer fen and prices as integer milli-fen per litre; both are shown
as yuan with integer arithmetic only, so what the operator reads is exactly what the
switch holds, never a float's approximation of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "FORMATS",
    "format_age",
    "format_money",
    "format_ms",
    "format_params",
    "format_percent",
    "format_price",
    "format_text",
]

_MILLI_FEN_PER_YUAN = 100_000


def format_money(fen: Any) -> str:
    """Integer fen as ``¥1,234.56`` (``-¥0.05`` for negatives)."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        return format_text(fen)
    yuan, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}¥{yuan:,}.{cents:02d}"


def format_price(milli_fen: Any) -> str:
    """Integer milli-fen per litre as yuan per litre: at least 2 decimals, more only if set."""
    if not isinstance(milli_fen, int) or isinstance(milli_fen, bool):
        return format_text(milli_fen)
    yuan, rest = divmod(abs(milli_fen), _MILLI_FEN_PER_YUAN)
    decimals = f"{rest:05d}".rstrip("0").ljust(2, "0")
    return f"{'-' if milli_fen < 0 else ''}¥{yuan:,}.{decimals}/L"


def format_age(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return format_text(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, whole = divmod(whole, 86_400)
    hours, whole = divmod(whole, 3_600)
    minutes, secs = divmod(whole, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def format_percent(ratio: Any) -> str:
    if not isinstance(ratio, int | float) or isinstance(ratio, bool):
        return format_text(ratio)
    return f"{ratio * 100:.1f}%"


def format_ms(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return format_text(value)
    return f"{value:.1f}ms"


def format_text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_text(v) for v in value) or "-"
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return str(value)


def format_params(params: Any) -> str:
    """A command's declared parameters (from ``help``) as ``name:kind=default`` words;
    required ones have no default and a ``!``."""
    if not isinstance(params, list):
        return format_text(params)
    words = []
    for param in params:
        if not isinstance(param, dict):
            return format_text(params)
        word = f"{param.get('name')}:{param.get('kind')}"
        word += "!" if param.get("required") else f"={param.get('default')!r}"
        words.append(word)
    return " ".join(words) or "-"


FORMATS: dict[str, Callable[[Any], str]] = {
    "params": format_params,
    "text": format_text,
    "money": format_money,
    "price": format_price,
    "age": format_age,
    "pct": format_percent,
    "ms": format_ms,
}
