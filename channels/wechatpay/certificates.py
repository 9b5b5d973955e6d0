"""The platform keys a merchant verifies WeChat's signatures with.

WeChat signs with a *platform certificate* named by its serial (upper-case hex), and rotates
them: for days old and new certificates both sign, chosen at random, so the merchant holds
several at once, keyed by serial. Newer merchants are given a *WeChat Pay public key* instead,
named ``PUB_KEY_ID_...``; a migrating merchant sees both kinds mixed.

``PlatformKeys`` is an immutable snapshot. The channel swaps in a new snapshot after
``/v3/certificates`` — on a schedule, never because a callback named a serial it does not know
(an attacker could otherwise make every forged callback cost us a fetch).

The ``/v3/certificates`` answer is self-bootstrapping: each certificate is encrypted with the
merchant's APIv3 key (GCM authenticates it), and the answer itself is signed by one of the
certificates it contains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from channels.wechatpay.aead import EncryptedResource
from channels.wechatpay.errors import ProtocolError, SignatureError
from channels.wechatpay.signing import SCHEMA, SignedHeaders, rsa_verify
from channels.wechatpay.times import to_rfc3339

__all__ = [
    "CERTIFICATE_AAD",
    "PUBLIC_KEY_PREFIX",
    "PlatformCert",
    "PlatformKeys",
    "build_certificates_response",
    "load_certificate",
    "parse_certificates_response",
    "serial_hex",
]

PUBLIC_KEY_PREFIX = "PUB_KEY_ID_"
CERTIFICATE_AAD = "certificate"


def serial_hex(certificate: x509.Certificate) -> str:
    """The serial as WeChat writes it: upper-case hex, no separators."""
    return format(certificate.serial_number, "X")


@dataclass(frozen=True, slots=True)
class PlatformCert:
    serial: str
    certificate: x509.Certificate = field(repr=False)

    @property
    def not_before(self) -> float:
        return self.certificate.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.certificate.not_valid_after_utc.timestamp()

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now <= self.not_after

    def public_key(self) -> RSAPublicKey:
        key = self.certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise ProtocolError("bad_certificate", "platform certificates carry RSA keys")
        return key

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(pem: bytes) -> PlatformCert:
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ProtocolError("bad_certificate", "not a PEM X.509 certificate") from exc
    if not isinstance(certificate.public_key(), RSAPublicKey):
        raise ProtocolError("bad_certificate", "platform certificates carry RSA keys")
    return PlatformCert(serial_hex(certificate), certificate)


@dataclass(frozen=True, slots=True)
class PlatformKeys:
    """Every key WeChat may sign with for one merchant, by the serial it names."""

    certs: Mapping[str, PlatformCert] = field(default_factory=dict)
    public_key_id: str | None = None
    public_key: RSAPublicKey | None = field(default=None, repr=False)
    ca: x509.Certificate | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.certs) + (1 if self.public_key is not None else 0)

    @property
    def serials(self) -> tuple[str, ...]:
        extra = (self.public_key_id,) if self.public_key_id and self.public_key else ()
        return (*sorted(self.certs), *extra)

    def key_for(self, serial: str, now: float) -> RSAPublicKey:
        """Exact match only: a serial written in decimal or lower case is a different name."""
        if self.public_key is not None and serial == self.public_key_id:
            return self.public_key
        cert = self.certs.get(serial)
        if cert is None:
            raise SignatureError("unknown_serial", f"no platform key {serial[:64]!r}")
        if not cert.valid_at(now):
            raise SignatureError("cert_expired", f"platform certificate {serial} not valid now")
        return cert.public_key()

    def verify(self, signed: SignedHeaders, body: bytes, now: float) -> None:
        """Signature over the raw ``body`` with the key the serial names."""
        if signed.signature_type != SCHEMA:
            raise SignatureError("signature_type", f"{signed.signature_type[:40]!r}")
        rsa_verify(self.key_for(signed.serial, now), signed.message(body), signed.signature)

    def admit(self, cert: PlatformCert, now: float) -> PlatformCert:
        """A certificate from a fetch must be valid now and, when a CA is configured, issued
        by it; otherwise it never enters the store."""
        if not cert.valid_at(now):
            raise SignatureError("cert_expired", f"certificate {cert.serial} not valid now")
        if self.ca is not None:
            try:
                cert.certificate.verify_directly_issued_by(self.ca)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise SignatureError("bad_cert_chain", f"{cert.serial} not issued by CA") from exc
        return cert

    def with_certs(self, fetched: Iterable[PlatformCert], now: float) -> PlatformKeys:
        """A new snapshot: current certificates plus the fetched ones that pass ``admit``.
        Expired certificates are dropped; the public key is kept."""
        merged = {s: c for s, c in self.certs.items() if c.not_after >= now}
        for cert in fetched:
            merged[cert.serial] = self.admit(cert, now)
        return PlatformKeys(merged, self.public_key_id, self.public_key, self.ca)


def parse_certificates_response(body: bytes, apiv3_key: bytes) -> list[PlatformCert]:
    """Decrypt each ``encrypt_certificate``; the listed serial must be the certificate's own."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_json", "certificates answer is not JSON") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        raise ProtocolError("bad_response", "certificates answer has no data list")
    certs: list[PlatformCert] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("serial_no"), str):
            raise ProtocolError("bad_response", "certificate entry without serial_no")
        resource = EncryptedResource.from_json(item.get("encrypt_certificate"))
        cert = load_certificate(resource.open(apiv3_key))
        if cert.serial != item["serial_no"]:
            raise ProtocolError("bad_response", f"serial {item['serial_no']!r} mislabelled")
        certs.append(cert)
    return certs


def build_certificates_response(
    certs: Iterable[PlatformCert], apiv3_key: bytes, nonces: Iterable[str]
) -> bytes:
    """The simulator's side: one entry per certificate, each sealed with the APIv3 key."""
    data: list[dict[str, Any]] = []
    for cert, nonce in zip(certs, nonces, strict=False):
        sealed = EncryptedResource.seal(
            apiv3_key, cert.pem(), associated_data=CERTIFICATE_AAD, nonce=nonce
        )
        data.append(
            {
                "serial_no": cert.serial,
                "effective_time": to_rfc3339(cert.not_before),
                "expire_time": to_rfc3339(cert.not_after),
                "encrypt_certificate": sealed.to_json(),
            }
        )
    return orjson.dumps({"data": data})
