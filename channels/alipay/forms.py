"""Alipay's form bodies (notifies and gateway requests), parsed strictly.

A form is ambiguous when a field appears twice: one reader takes the first, another the last,
and a signature checked over one value may then vouch for the other. So a duplicated field is
refused outright instead of being resolved. Values are URL-decoded exactly once, in the charset
the form names in its own ``charset`` field (Alipay sends GBK notifies to merchants whose app
is configured for GBK); the field names themselves are ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote_plus, unquote_to_bytes

from channels.alipay.errors import FormError

__all__ = ["CHARSETS", "Form", "codec_for", "encode_form", "parse_form"]

# Alipay's charset names → Python codecs. GB2312 text is a subset of GBK.
CHARSETS: Mapping[str, str] = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "gb2312": "gbk",
    "gb18030": "gb18030",
}
MAX_FIELDS = 256
_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True, slots=True)
class Form:
    fields: Mapping[str, str]  # in arrival order
    charset: str  # the Python codec the values were decoded with


def codec_for(charset: str) -> str:
    """The Python codec of an Alipay charset name; unknown names are refused."""
    codec = CHARSETS.get(charset.strip().lower())
    if codec is None:
        raise FormError("bad_charset", f"unsupported charset {charset!r}")
    return codec


def parse_form(body: bytes, default_charset: str = "utf-8") -> Form:
    """``application/x-www-form-urlencoded`` bytes → fields. Raises ``FormError`` with reason
    ``bad_form``, ``duplicate_field``, ``bad_charset`` or ``bad_encoding``."""
    raw: dict[str, bytes] = {}
    for part in body.split(b"&"):
        if not part:
            continue  # a trailing or doubled '&' carries no field
        name_bytes, sep, value = part.partition(b"=")
        if not sep:
            raise FormError("bad_form", "a field without '='")
        try:
            name = _unquote(name_bytes).decode("ascii")
        except UnicodeDecodeError as exc:
            raise FormError("bad_form", "a field name that is not ASCII") from exc
        if not _NAME.fullmatch(name):
            raise FormError("bad_form", f"unusable field name {name[:40]!r}")
        if name in raw:
            raise FormError("duplicate_field", f"field {name!r} appears more than once")
        raw[name] = value
        if len(raw) > MAX_FIELDS:
            raise FormError("bad_form", f"more than {MAX_FIELDS} fields")
    if not raw:
        raise FormError("bad_form", "empty form")
    codec = default_charset
    if "charset" in raw:
        try:
            codec = codec_for(_unquote(raw["charset"]).decode("ascii"))
        except UnicodeDecodeError as exc:
            raise FormError("bad_charset", "charset is not ASCII") from exc
    fields: dict[str, str] = {}
    for name, value in raw.items():
        try:
            fields[name] = _unquote(value).decode(codec)
        except UnicodeDecodeError as exc:
            raise FormError("bad_encoding", f"field {name!r} is not {codec}") from exc
    return Form(fields=fields, charset=codec)


def encode_form(
    fields: Mapping[str, str] | Iterable[tuple[str, str]], charset: str = "utf-8"
) -> bytes:
    """Fields → a form body, every value percent-encoded in ``charset`` (``+`` for spaces)."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    codec = codec_for(charset)
    return "&".join(
        f"{quote_plus(name)}={quote_plus(value, encoding=codec)}" for name, value in items
    ).encode("ascii")


def _unquote(value: bytes) -> bytes:
    return unquote_to_bytes(value.replace(b"+", b" "))
