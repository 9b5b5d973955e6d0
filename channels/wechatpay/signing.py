"""WECHATPAY2-SHA256-RSA2048: the request ``Authorization`` header and the response signature.

Both directions sign a newline-terminated message with RSA PKCS#1 v1.5 over SHA-256:

* a request (merchant → WeChat): ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``, signed with
  the merchant's key, sent in ``Authorization``;
* a response or callback (WeChat → merchant): ``TIMESTAMP\\nNONCE\\nBODY\\n``, signed with a
  platform key, sent in the ``Wechatpay-*`` headers.

The messages are built from the raw bytes on the wire. Re-serialising a parsed JSON body would
change whitespace or key order and either break a good signature or, worse, let a tampered body
be "verified" against a canonical form it was never sent in.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from channels.wechatpay.errors import SignatureError

__all__ = [
    "SCHEMA",
    "Authorization",
    "SignedHeaders",
    "make_nonce",
    "request_message",
    "response_message",
    "rsa_sign",
    "rsa_verify",
    "sign_request",
    "sign_response",
]

SCHEMA = "WECHATPAY2-SHA256-RSA2048"

_AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
_AUTH_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_DIGITS = re.compile(r"[0-9]{1,12}")


def make_nonce() -> str:
    """32 upper-case hex characters, the shape WeChat's own tools use."""
    return secrets.token_hex(16).upper()


def request_message(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a request signature covers; ``target`` is the path with its raw query string."""
    head = f"{method.upper()}\n{target}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes a response or callback signature covers: the raw body, never re-serialised."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def rsa_sign(private_key: RSAPrivateKey, message: bytes) -> str:
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(public_key: RSAPublicKey, message: bytes, signature: str) -> None:
    """Raises ``SignatureError`` (``bad_signature``) unless ``signature`` is strict base64 of a
    valid signature of ``message``. A truncated signature fails here, not in a decoder."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise SignatureError("bad_signature", "signature is not base64") from exc
    if len(raw) != public_key.key_size // 8:
        raise SignatureError("bad_signature", f"signature has {len(raw)} bytes")
    try:
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureError("bad_signature", "signature does not verify") from exc


@dataclass(frozen=True, slots=True)
class Authorization:
    """The five fields of a request's ``Authorization`` header."""

    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str

    def header(self) -> str:
        fields = ",".join(f'{name}="{getattr(self, name)}"' for name in _AUTH_FIELDS)
        return f"{SCHEMA} {fields}"

    @classmethod
    def parse(cls, header: str) -> Authorization:
        """Strict: the schema, each of the five fields exactly once, nothing else."""
        schema, _, rest = header.strip().partition(" ")
        if schema != SCHEMA:
            raise SignatureError("signature_type", f"authorization schema {schema[:40]!r}")
        values: dict[str, str] = {}
        for part in rest.split(","):
            match = _AUTH_PAIR.fullmatch(part)
            if match is None:
                raise SignatureError("bad_authorization", f"malformed field {part[:40]!r}")
            name, value = match.groups()
            if name not in _AUTH_FIELDS or name in values:
                raise SignatureError("bad_authorization", f"unexpected field {name!r}")
            values[name] = value
        missing = [name for name in _AUTH_FIELDS if not values.get(name)]
        if missing:
            raise SignatureError("bad_authorization", f"missing {', '.join(missing)}")
        if _DIGITS.fullmatch(values["timestamp"]) is None:
            raise SignatureError("bad_timestamp", "timestamp is not a number")
        return cls(**values)

    def message(self, method: str, target: str, body: bytes) -> bytes:
        return request_message(method, target, self.timestamp, self.nonce_str, body)


def sign_request(
    method: str,
    target: str,
    body: bytes,
    *,
    mchid: str,
    serial_no: str,
    private_key: RSAPrivateKey,
    timestamp: int,
    nonce: str,
) -> Authorization:
    ts = str(timestamp)
    signature = rsa_sign(private_key, request_message(method, target, ts, nonce, body))
    return Authorization(mchid, nonce, signature, ts, serial_no)


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The ``Wechatpay-*`` headers of a response or callback."""

    serial: str
    signature: str
    timestamp: str
    nonce: str
    signature_type: str = SCHEMA

    @property
    def timestamp_s(self) -> int:
        return int(self.timestamp)

    def as_headers(self) -> dict[str, str]:
        return {
            "Wechatpay-Serial": self.serial,
            "Wechatpay-Signature": self.signature,
            "Wechatpay-Timestamp": self.timestamp,
            "Wechatpay-Nonce": self.nonce,
            "Wechatpay-Signature-Type": self.signature_type,
        }

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SignedHeaders:
        """``headers`` with lower-case names. Checks presence, non-emptiness and a numeric
        timestamp, in that order; the signature type is returned for the caller to compare
        (a missing type is kept empty so the caller can refuse it as a downgrade)."""
        values: dict[str, str] = {}
        for field in ("signature", "timestamp", "nonce", "serial"):
            value = headers.get(f"wechatpay-{field}", "").strip()
            if not value:
                raise SignatureError("missing_header", f"Wechatpay-{field.title()} is missing")
            values[field] = value
        if _DIGITS.fullmatch(values["timestamp"]) is None:
            raise SignatureError("bad_timestamp", "Wechatpay-Timestamp is not a number")
        return cls(
            serial=values["serial"],
            signature=values["signature"],
            timestamp=values["timestamp"],
            nonce=values["nonce"],
            signature_type=headers.get("wechatpay-signature-type", "").strip(),
        )

    def message(self, body: bytes) -> bytes:
        return response_message(self.timestamp, self.nonce, body)


def sign_response(
    body: bytes, *, serial: str, private_key: RSAPrivateKey, timestamp: int, nonce: str
) -> SignedHeaders:
    """What WeChat (here: the simulator) attaches to every 2xx answer and every callback."""
    ts = str(timestamp)
    signature = rsa_sign(private_key, response_message(ts, nonce, body))
    return SignedHeaders(serial=serial, signature=signature, timestamp=ts, nonce=nonce)
