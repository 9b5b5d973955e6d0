"""AEAD_AES_256_GCM: how WeChat encrypts callback resources and platform certificates.

The key is the merchant's 32-character APIv3 key used as 32 raw bytes, the nonce is the
resource's 12-character ``nonce`` string as bytes, the associated data is the resource's
``associated_data`` string, and the base64 ``ciphertext`` ends with the 16-byte GCM tag. GCM
authenticates: a flipped bit anywhere, a wrong nonce, AAD or key all fail the same way, which
is why every one of them maps to the single ``decrypt_failed`` reason.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from channels.wechatpay.errors import DecryptError, ProtocolError

__all__ = [
    "ALGORITHM",
    "EncryptedResource",
    "check_apiv3_key",
    "decrypt",
    "encrypt",
]

ALGORITHM = "AEAD_AES_256_GCM"
_TAG_BYTES = 16


def check_apiv3_key(key: bytes) -> bytes:
    """The APIv3 key is 32 printable ASCII characters set in the merchant console."""
    if len(key) != 32 or not key.isascii() or not key.isalnum():
        raise DecryptError("bad_key", "the APIv3 key must be 32 ASCII letters or digits")
    return key


def decrypt(apiv3_key: bytes, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    try:
        raw = base64.b64decode(ciphertext.encode("ascii"), validate=True)
        nonce_bytes = nonce.encode("ascii")
        aad = associated_data.encode("utf-8")
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise DecryptError("decrypt_failed", "ciphertext or nonce is not well formed") from exc
    if len(raw) <= _TAG_BYTES or not nonce_bytes:
        raise DecryptError("decrypt_failed", "ciphertext too short or nonce empty")
    try:
        return AESGCM(check_apiv3_key(apiv3_key)).decrypt(nonce_bytes, raw, aad)
    except InvalidTag as exc:
        raise DecryptError("decrypt_failed", "authentication tag does not match") from exc
    except ValueError as exc:  # e.g. a nonce length GCM refuses
        raise DecryptError("decrypt_failed", str(exc)) from exc


def encrypt(apiv3_key: bytes, plaintext: bytes, associated_data: str, nonce: str) -> str:
    """Base64 of ciphertext‖tag; the simulator's side of :func:`decrypt`."""
    sealed = AESGCM(check_apiv3_key(apiv3_key)).encrypt(
        nonce.encode("ascii"), plaintext, associated_data.encode("utf-8")
    )
    return base64.b64encode(sealed).decode("ascii")


@dataclass(frozen=True, slots=True)
class EncryptedResource:
    """The ``resource`` object of a callback, or ``encrypt_certificate`` of /v3/certificates."""

    algorithm: str
    ciphertext: str
    associated_data: str
    nonce: str
    original_type: str = ""

    @classmethod
    def from_json(cls, value: object) -> EncryptedResource:
        if not isinstance(value, Mapping):
            raise ProtocolError("bad_resource", "resource is not an object")
        fields: dict[str, str] = {}
        for name in ("algorithm", "ciphertext", "nonce"):
            item = value.get(name)
            if not isinstance(item, str) or not item:
                raise ProtocolError("bad_resource", f"resource.{name} is missing")
            fields[name] = item
        associated = value.get("associated_data", "")
        original = value.get("original_type", "")
        if not isinstance(associated, str) or not isinstance(original, str):
            raise ProtocolError("bad_resource", "resource fields are not strings")
        return cls(
            algorithm=fields["algorithm"],
            ciphertext=fields["ciphertext"],
            associated_data=associated,
            nonce=fields["nonce"],
            original_type=original,
        )

    @classmethod
    def seal(
        cls,
        apiv3_key: bytes,
        plaintext: bytes,
        *,
        associated_data: str,
        nonce: str,
        original_type: str = "",
    ) -> EncryptedResource:
        return cls(
            algorithm=ALGORITHM,
            ciphertext=encrypt(apiv3_key, plaintext, associated_data, nonce),
            associated_data=associated_data,
            nonce=nonce,
            original_type=original_type,
        )

    def open(self, apiv3_key: bytes) -> bytes:
        if self.algorithm != ALGORITHM:
            raise DecryptError("bad_algorithm", f"algorithm {self.algorithm[:40]!r}")
        return decrypt(apiv3_key, self.nonce, self.associated_data, self.ciphertext)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.original_type:
            out["original_type"] = self.original_type
        out.update(
            algorithm=self.algorithm,
            ciphertext=self.ciphertext,
            associated_data=self.associated_data,
            nonce=self.nonce,
        )
        return out
