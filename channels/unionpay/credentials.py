"""UnionPay key material on disk: what the switch loads, and what the simulator generates.

Layout under ``$FUELSWITCH_HOME/keys/unionpay/``::

    <merId>/                 the switch's directory for one merchant (ChannelConfig.keys_dir)
        merchant_key.pem     the merchant's signing key (PKCS#8)
        merchant_cert.pem    its certificate; the serial, in decimal, is the certId
        acp_root.pem         UnionPay's root CA certificate
        acp_middle.pem       UnionPay's intermediate CA certificate
        secure_key           optional: the shared key for signMethod 11/12
    _provider/               UnionPay's side; only the simulator reads it
        root_ca.pem, root_ca_key.pem
        middle_ca.pem, middle_ca_key.pem
        sign_cert.pem, sign_key.pem      the current signing certificate
        retired/sign_cert_<certId>.pem   certificates replaced by a rotation
        merchants/<merId>.pem            merchant certificates registered with UnionPay

The merId is the merchant directory's name. UnionPay's own signing certificate is not stored
on the switch side at all: 5.1.0 sends it with every message and the root and intermediate
decide whether to believe it (see ``pki``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import AcpError
from .pki import (
    IssuedCert,
    TestPki,
    TrustAnchors,
    cert_id_of,
    issue_merchant_cert,
    issue_unionpay_sign_cert,
    load_certificate,
    load_private_key,
)

__all__ = [
    "PROVIDER_DIR",
    "MerchantCredentials",
    "ProviderCredentials",
    "generate",
    "provider_root",
    "rotate_signing",
]

PROVIDER_DIR = "_provider"
MERCHANT_KEY = "merchant_key.pem"
MERCHANT_CERT = "merchant_cert.pem"
ROOT = "acp_root.pem"
MIDDLE = "acp_middle.pem"
SECURE_KEY = "secure_key"


def provider_root(keys_root: Path) -> Path:
    """``keys_root`` is ``$FUELSWITCH_HOME/keys``; UnionPay's part lives below it."""
    return keys_root / "unionpay"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AcpError("missing_key_file", f"cannot read {path}: {exc.strerror}") from exc


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


@dataclass(frozen=True, slots=True)
class MerchantCredentials:
    """What a UnionPayChannel signs and verifies with."""

    mer_id: str
    cert_id: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    anchors: TrustAnchors
    secure_key: str | None = None

    @classmethod
    def load(cls, keys_dir: Path) -> MerchantCredentials:
        cert = load_certificate(_read(keys_dir / MERCHANT_CERT))
        key = load_private_key(_read(keys_dir / MERCHANT_KEY))
        if _spki(key.public_key()) != _spki(cert.public_key()):
            raise AcpError("bad_key", f"{keys_dir}: the merchant key does not match its cert")
        anchors = TrustAnchors.from_pem(_read(keys_dir / ROOT), _read(keys_dir / MIDDLE))
        secure_path = keys_dir / SECURE_KEY
        secure = secure_path.read_text("utf-8").strip() if secure_path.exists() else None
        return cls(keys_dir.name, cert_id_of(cert), key, cert, anchors, secure or None)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _load_issued(directory: Path, cert_name: str, key_name: str) -> IssuedCert:
    return IssuedCert(
        load_private_key(_read(directory / key_name)),
        load_certificate(_read(directory / cert_name)),
    )


@dataclass(frozen=True, slots=True)
class ProviderCredentials:
    """UnionPay's private side, for the simulator."""

    root: IssuedCert
    intermediate: IssuedCert
    signing: IssuedCert
    merchant_certs: Mapping[str, x509.Certificate]  # merId → registered signing certificate

    @classmethod
    def load(cls, keys_root: Path) -> ProviderCredentials:
        base = provider_root(keys_root) / PROVIDER_DIR
        merchants = {
            path.stem: load_certificate(path.read_bytes())
            for path in sorted((base / "merchants").glob("*.pem"))
        }
        return cls(
            root=_load_issued(base, "root_ca.pem", "root_ca_key.pem"),
            intermediate=_load_issued(base, "middle_ca.pem", "middle_ca_key.pem"),
            signing=_load_issued(base, "sign_cert.pem", "sign_key.pem"),
            merchant_certs=merchants,
        )


def generate(keys_root: Path, mer_ids: Iterable[str], now: datetime) -> None:
    """Create UnionPay's test PKI and the merchant directories that are missing.

    Idempotent: existing material is kept, so a restarted simulator keeps verifying what the
    switch already holds. A new merchant gets a certificate from the existing intermediate."""
    root_dir = provider_root(keys_root)
    base = root_dir / PROVIDER_DIR
    if not (base / "sign_key.pem").exists():
        pki = TestPki.generate(now)
        for name, issued in (("root_ca", pki.root), ("middle_ca", pki.intermediate)):
            _write(base / f"{name}.pem", issued.cert_pem())
            _write(base / f"{name}_key.pem", issued.key_pem(), secret=True)
        _write(base / "sign_cert.pem", pki.signing.cert_pem())
        _write(base / "sign_key.pem", pki.signing.key_pem(), secret=True)
    provider = ProviderCredentials.load(keys_root)
    for mer_id in mer_ids:
        directory = root_dir / mer_id
        if (directory / MERCHANT_KEY).exists() and (directory / MERCHANT_CERT).exists():
            continue
        merchant = issue_merchant_cert(provider.intermediate, mer_id, now)
        _write(directory / MERCHANT_KEY, merchant.key_pem(), secret=True)
        _write(directory / MERCHANT_CERT, merchant.cert_pem())
        _write(directory / ROOT, provider.root.cert_pem())
        _write(directory / MIDDLE, provider.intermediate.cert_pem())
        _write(base / "merchants" / f"{mer_id}.pem", merchant.cert_pem())


def rotate_signing(keys_root: Path, now: datetime) -> IssuedCert:
    """A new UnionPay signing certificate from the same intermediate; the old one is retired."""
    provider = ProviderCredentials.load(keys_root)
    base = provider_root(keys_root) / PROVIDER_DIR
    old = provider.signing
    _write(base / "retired" / f"sign_cert_{old.cert_id}.pem", old.cert_pem())
    seq = len(list((base / "retired").glob("sign_cert_*.pem"))) + 1
    new = issue_unionpay_sign_cert(provider.intermediate, now, seq=seq)
    _write(base / "sign_key.pem", new.key_pem(), secret=True)
    _write(base / "sign_cert.pem", new.cert_pem())
    return new
