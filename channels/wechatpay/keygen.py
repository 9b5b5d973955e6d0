"""Key and certificate making for the simulator's key material (never used by the switch).

WeChat's platform and merchant API certificates are issued by its own CA ("Tenpay.com Root
CA"); the simulator keeps a CA of its own so the switch can check that a fetched platform
certificate really comes from the provider it is configured for. Serials are 40 upper-case hex
digits, like WeChat's, so nothing in the switch gets away with assuming shorter or decimal ones.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.x509.oid import NameOID

from channels.wechatpay.errors import CredentialsError

__all__ = [
    "cert_pem",
    "issue_certificate",
    "key_pem",
    "load_private_key",
    "load_public_key",
    "make_ca",
    "new_rsa_key",
    "new_serial",
    "public_key_pem",
]

_RSA_BITS = 2048


def new_rsa_key() -> RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)


def new_serial() -> int:
    """A positive 20-byte serial that prints as exactly 40 hex digits."""
    low, high = 16**39, 2**159
    return low + secrets.randbelow(high - low)


def _name(common_name: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(common_name: str, now: datetime, days: int) -> tuple[RSAPrivateKey, x509.Certificate]:
    key = new_rsa_key()
    name = _name(common_name, "Tenpay.com")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(new_serial())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_certificate(
    ca_key: RSAPrivateKey,
    ca_cert: x509.Certificate,
    subject_key: RSAPublicKey,
    *,
    common_name: str,
    org: str,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, org))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key)
        .serial_number(new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


def key_pem(key: RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_private_key(pem: bytes, what: str) -> RSAPrivateKey:
    """The merchant's own key, from the operator's key directory. OpenSSL's consistency
    check of an RSA private key costs about 45 ms, every start, for every channel; it guards
    against keys of unknown provenance, and a damaged key of ours fails at the provider's
    first signature check anyway."""
    try:
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise CredentialsError("bad_key", f"{what} is not an unencrypted PEM key") from exc
    if not isinstance(key, RSAPrivateKey):
        raise CredentialsError("bad_key", f"{what} is not an RSA key")
    return key


def load_public_key(pem: bytes, what: str) -> RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise CredentialsError("bad_key", f"{what} is not a PEM public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise CredentialsError("bad_key", f"{what} is not an RSA key")
    return key
