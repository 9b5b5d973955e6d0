"""ACP 5.1.0 signatures.

The string to sign is every field except ``signature``, sorted by name, written ``k=v`` and
joined with ``&`` (values raw, never URL-encoded). For ``signMethod=01`` (RSA) ACP 5.1.0 does
not sign that string directly: it takes the lower-case hex SHA-256 of the UTF-8 string and signs
*the 64-character hex text* with SHA256withRSA (PKCS#1 v1.5), base64. 5.0.0 did the same with
SHA-1 (hex SHA-1, SHA1withRSA); a 5.0.0-style signature on a message that says 5.1.0 is a
downgrade and is refused with its own reason, ``signature_type``, so it is visible as such.

``signMethod`` 11 and 12 are the keyed-digest methods (SHA-256 / SM3 of the string plus
``&`` plus the hex digest of a shared secure key). They prove only that the sender knows the
secure key, so they are accepted only when a channel is explicitly configured for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import AcpError
from .pki import SignCertVerifier

__all__ = [
    "SIGN_METHOD_RSA",
    "SIGN_METHOD_SHA256",
    "SIGN_METHOD_SM3",
    "VERSION",
    "SignPolicy",
    "digest_hex",
    "sign_keyed",
    "sign_rsa",
    "sign_string",
    "signed",
    "verify_keyed",
    "verify_message",
    "verify_rsa",
]

VERSION = "5.1.0"
SIGN_METHOD_RSA = "01"
SIGN_METHOD_SHA256 = "11"
SIGN_METHOD_SM3 = "12"
_KEYED = frozenset({SIGN_METHOD_SHA256, SIGN_METHOD_SM3})


def sign_string(fields: Mapping[str, str]) -> str:
    """``k=v&...`` of every field but ``signature``, sorted by name."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def digest_hex(text: str, algorithm: str = "sha256") -> str:
    """Lower-case hex digest of UTF-8 ``text``: ``sha256``, ``sha1`` (5.0.0) or ``sm3``."""
    if algorithm == "sm3":
        h = hashes.Hash(hashes.SM3())
        h.update(text.encode("utf-8"))
        return h.finalize().hex()
    return hashlib.new(algorithm, text.encode("utf-8")).hexdigest()


def sign_rsa(fields: Mapping[str, str], key: rsa.RSAPrivateKey) -> str:
    """The 5.1.0 ``signature`` value for ``fields`` (signMethod 01)."""
    hexed = digest_hex(sign_string(fields)).encode("ascii")
    return base64.b64encode(key.sign(hexed, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def signed(fields: Mapping[str, str], key: rsa.RSAPrivateKey) -> dict[str, str]:
    """``fields`` with their RSA ``signature`` added (``signMethod`` must already be 01)."""
    if fields.get("signMethod") != SIGN_METHOD_RSA:
        raise AcpError("sign_method", "RSA signing needs signMethod=01 in the fields")
    out = {k: v for k, v in fields.items() if k != "signature"}
    out["signature"] = sign_rsa(out, key)
    return out


def _decode_signature(fields: Mapping[str, str]) -> bytes:
    text = fields.get("signature", "")
    if not text:
        raise AcpError("missing_field", "no signature")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AcpError("bad_signature", "signature is not base64") from exc


def _rsa_ok(key: rsa.RSAPublicKey, raw: bytes, text: str, algorithm: str) -> bool:
    hash_cls: hashes.HashAlgorithm = hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()
    try:
        key.verify(raw, digest_hex(text, algorithm).encode("ascii"), padding.PKCS1v15(), hash_cls)
    except InvalidSignature:
        return False
    return True


def verify_rsa(fields: Mapping[str, str], key: rsa.RSAPublicKey) -> None:
    """Check a 5.1.0 RSA signature; ``AcpError`` (bad_signature / signature_type) otherwise."""
    raw = _decode_signature(fields)
    text = sign_string(fields)
    if _rsa_ok(key, raw, text, "sha256"):
        return
    if _rsa_ok(key, raw, text, "sha1"):
        raise AcpError("signature_type", "a 5.0.0 SHA-1 signature on a 5.1.0 message")
    raise AcpError("bad_signature", "the signature does not verify")


def sign_keyed(fields: Mapping[str, str], secure_key: str, method: str) -> str:
    algorithm = "sm3" if method == SIGN_METHOD_SM3 else "sha256"
    text = f"{sign_string(fields)}&{digest_hex(secure_key, algorithm)}"
    return digest_hex(text, algorithm)


def verify_keyed(fields: Mapping[str, str], secure_key: str, method: str) -> None:
    expected = sign_keyed(fields, secure_key, method)
    if not hmac.compare_digest(expected, fields.get("signature", "")):
        raise AcpError("bad_signature", "the keyed signature does not verify")


@dataclass(frozen=True, slots=True)
class SignPolicy:
    """Which ``signMethod`` values a channel accepts. RSA (01) only, unless configured."""

    methods: frozenset[str] = field(default_factory=lambda: frozenset({SIGN_METHOD_RSA}))
    secure_key: str | None = None

    def __post_init__(self) -> None:
        unknown = self.methods - _KEYED - {SIGN_METHOD_RSA}
        if unknown:
            raise AcpError("sign_method", f"unsupported signMethod {sorted(unknown)}")
        if self.methods & _KEYED and not self.secure_key:
            raise AcpError("sign_method", "signMethod 11/12 need a secure key")


def verify_message(
    fields: Mapping[str, str], certs: SignCertVerifier, now: float, policy: SignPolicy
) -> None:
    """Verify a message from UnionPay (reply or notify) under ``policy``.

    Order matters: the version and method are checked before anything is parsed, and the
    certificate's chain before its key is trusted with the signature."""
    version = fields.get("version")
    if version != VERSION:
        raise AcpError("bad_version", f"version {version!r}, expected {VERSION}")
    method = fields.get("signMethod", "")
    if method not in policy.methods:
        raise AcpError("sign_method", f"signMethod {method!r} is not accepted")
    if method == SIGN_METHOD_RSA:
        pem = fields.get("signPubKeyCert", "")
        if not pem:
            raise AcpError("missing_field", "no signPubKeyCert")
        verify_rsa(fields, certs.verify_pem(pem, now))
    else:
        assert policy.secure_key is not None  # SignPolicy guarantees it
        verify_keyed(fields, policy.secure_key, method)
