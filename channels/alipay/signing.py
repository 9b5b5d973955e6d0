"""Alipay's RSA2 signatures: the three sign strings and the signed-response extraction.

Alipay signs three different things, and each has its own rule for the string:

* a **request** (merchant → gateway): every field except ``sign`` whose value is not empty,
  sorted by name, ``k=v`` joined with ``&``, values as they are (not URL-encoded);
* a **response** (gateway → merchant): the exact JSON text of the ``*_response`` member as it
  appears in the body. Re-serialising the parsed JSON would change spacing, escapes or key order
  and break the signature, so the member is cut out of the raw text by a JSON-aware scanner;
* a **notify** (gateway → ``notify_url``): every field except ``sign`` and ``sign_type``,
  *including empty ones*, sorted, joined the same way, values URL-decoded exactly once.

All three are SHA256withRSA (PKCS#1 v1.5) over the string encoded in the message's charset,
base64 in ``sign``. ``RSA`` (SHA-1) exists at Alipay but is never accepted here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.alipay.errors import ResponseError

__all__ = [
    "SIGN_TYPE",
    "SignedResponse",
    "decode_signature",
    "notify_sign_content",
    "request_sign_content",
    "response_key",
    "sign_content",
    "sign_notify",
    "sign_response",
    "split_signed_response",
    "verify_content",
]

SIGN_TYPE = "RSA2"


def request_sign_content(fields: Mapping[str, str]) -> str:
    """The string a request's ``sign`` covers: non-empty fields except ``sign``, sorted."""
    items = sorted((k, v) for k, v in fields.items() if k != "sign" and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def notify_sign_content(fields: Mapping[str, str]) -> str:
    """The string a notify's ``sign`` covers: every field except ``sign`` and ``sign_type``,
    empty ones included (Alipay's own verifier keeps them, so an empty field is signed too)."""
    items = sorted((k, v) for k, v in fields.items() if k not in ("sign", "sign_type"))
    return "&".join(f"{k}={v}" for k, v in items)


def sign_content(content: str, key: rsa.RSAPrivateKey, charset: str = "utf-8") -> str:
    """SHA256withRSA over ``content`` in ``charset``, base64 without line breaks."""
    signature = key.sign(content.encode(charset), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def decode_signature(sign: str) -> bytes:
    """Strict base64: a signature with stray characters is not a signature.

    A form decoder turns an unescaped ``+`` into a space; base64 has no spaces, so mapping
    them back is unambiguous and lets a sender's encoding slip through to the RSA check,
    which still decides."""
    try:
        return base64.b64decode(sign.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ResponseError("bad_signature", "sign is not base64") from exc


def verify_content(
    content: str | bytes, sign: str, key: rsa.RSAPublicKey, charset: str = "utf-8"
) -> bool:
    """True when ``sign`` is Alipay's SHA256withRSA signature of ``content``."""
    try:
        signature = decode_signature(sign)
    except ResponseError:
        return False
    data = content.encode(charset) if isinstance(content, str) else content
    try:
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def sign_notify(
    fields: Mapping[str, str], key: rsa.RSAPrivateKey, charset: str = "utf-8"
) -> dict[str, str]:
    """Alipay's side of a notify (the simulator's): ``fields`` plus ``sign_type`` and ``sign``."""
    signed = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
    signed["sign_type"] = SIGN_TYPE
    signed["sign"] = sign_content(notify_sign_content(signed), key, charset)
    return signed


def sign_response(
    member: str, body: Mapping[str, Any], key: rsa.RSAPrivateKey, charset: str = "utf-8"
) -> bytes:
    """Alipay's side of a gateway answer (the simulator's): ``{"<member>":{..},"sign":".."}``,
    signed over the member's JSON exactly as it is written into the body."""
    text = orjson.dumps(dict(body)).decode("utf-8")
    sign = sign_content(text, key, charset)
    document = f'{{"{member}":{text},"sign":"{sign}"}}'
    return document.encode(charset)


def response_key(method: str) -> str:
    """``alipay.trade.query`` → ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


@dataclass(frozen=True, slots=True)
class SignedResponse:
    """A gateway answer cut into the signed member and the signature."""

    key: str  # ``alipay_..._response`` or ``error_response``
    raw: bytes  # the exact bytes the signature covers
    body: Mapping[str, Any]  # the member, parsed
    sign: str | None  # None when the answer carries no signature


def split_signed_response(raw: bytes, method: str, charset: str = "utf-8") -> SignedResponse:
    """Find the ``*_response`` member (or ``error_response``) and ``sign`` in the raw body.

    A member that appears twice is refused: a JSON parser keeps the last one, so a body with
    two could show one member to the signature check and the other to the business logic."""
    try:
        text = raw.decode(charset)
        document = orjson.loads(text)
    except (UnicodeDecodeError, LookupError, orjson.JSONDecodeError) as exc:
        raise ResponseError("bad_json", f"response is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ResponseError("bad_json", "response is not a JSON object")
    spans = _top_level_spans(text)
    names = [name for name, _, _ in spans]
    wanted = response_key(method)
    key = wanted if wanted in names else "error_response"
    if names.count(key) != 1 or names.count("sign") > 1:
        raise ResponseError("bad_response", f"expected exactly one {wanted!r} member")
    start, end = next((s, e) for name, s, e in spans if name == key)
    body = document[key]
    if not isinstance(body, dict):
        raise ResponseError("bad_response", f"{key} is not an object")
    sign = document.get("sign")
    if sign is not None and not isinstance(sign, str):
        raise ResponseError("bad_response", "sign is not a string")
    return SignedResponse(key=key, raw=text[start:end].encode(charset), body=body, sign=sign)


_WS = " \t\r\n"


def _top_level_spans(text: str) -> list[tuple[str, int, int]]:
    """(name, start, end) of every member of the top-level object, as raw text offsets.
    ``text`` is known to be valid JSON, so the scanner only needs to find boundaries."""
    spans: list[tuple[str, int, int]] = []
    i = _skip_ws(text, 0)
    if text[i] != "{":
        raise ResponseError("bad_json", "response is not a JSON object")
    i = _skip_ws(text, i + 1)
    if text[i] == "}":
        return spans
    while True:
        name_end = _string_end(text, i)
        name = orjson.loads(text[i:name_end])
        i = _skip_ws(text, name_end)
        i = _skip_ws(text, i + 1)  # past ':'
        value_end = _value_end(text, i)
        spans.append((name, i, value_end))
        i = _skip_ws(text, value_end)
        if text[i] == "}":
            return spans
        i = _skip_ws(text, i + 1)  # past ','


def _skip_ws(text: str, i: int) -> int:
    while text[i] in _WS:
        i += 1
    return i


def _string_end(text: str, i: int) -> int:
    """Index just past the JSON string starting at ``text[i] == '"'``."""
    i += 1
    while text[i] != '"':
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _value_end(text: str, i: int) -> int:
    """Index just past the JSON value starting at ``i`` (strings may hold braces)."""
    if text[i] == '"':
        return _string_end(text, i)
    if text[i] in "{[":
        depth = 0
        while True:
            char = text[i]
            if char == '"':
                i = _string_end(text, i)
                continue
            if char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
    while i < len(text) and text[i] not in ",}]" + _WS:
        i += 1
    return i
