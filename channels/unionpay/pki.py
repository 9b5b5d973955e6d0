"""UnionPay's certificate chain: checking the signing certificate a message carries, and making a
test PKI for the simulator.

In ACP 5.1.0 UnionPay does not hand out its signing certificate in advance: every reply and
notify carries it in ``signPubKeyCert``. Anyone can put a certificate there, so the certificate
is only as good as its chain. Before its key is used we check, with the configured root and
intermediate (UnionPay's ``acp_root`` / ``acp_middle``):

1. the leaf's issuer is the intermediate's subject and the intermediate's signature over the
   leaf verifies (and the intermediate's over the root, checked once when the anchors load);
2. leaf, intermediate and root are all inside their validity windows at ``now``;
3. the leaf is an end-entity RSA key of at least 2048 bits;
4. the leaf's subject CN names UnionPay: CNs look like ``041@Z12@中国银联股份有限公司@00000062``
   and the third ``@`` field must be the company name exactly. A certificate from the same CA
   issued to anyone else (a merchant, say) chains perfectly and must still be refused.

Because the signing certificate travels with each message, a rotation needs nothing on our
side: a new certificate from the same intermediate verifies at once.

The generator builds the same shape for the simulator: root CA → intermediate CA → UnionPay's
signing certificate, and merchant signing certificates from the same intermediate (the
merchant's ``certId`` is its certificate's serial number in decimal).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .errors import AcpError

__all__ = [
    "UNIONPAY_COMPANY",
    "IssuedCert",
    "SignCertVerifier",
    "TestPki",
    "TrustAnchors",
    "cert_id_of",
    "issue_certificate",
    "issue_merchant_cert",
    "issue_unionpay_sign_cert",
    "load_certificate",
    "load_private_key",
    "unionpay_common_name",
]

UNIONPAY_COMPANY = "中国银联股份有限公司"
MIN_KEY_BITS = 2048


def load_certificate(pem: bytes | str) -> x509.Certificate:
    """A PEM certificate, or ``AcpError("bad_cert")``: the text comes from the network."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise AcpError("bad_cert", f"not a PEM certificate: {exc}") from exc


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Our own signing key (see ``channels.wechatpay.keygen.load_private_key`` on skipping
    OpenSSL's 45 ms consistency check of a trusted key)."""
    try:
        key = serialization.load_pem_private_key(
            pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise AcpError("bad_key", f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AcpError("bad_key", "UnionPay signing keys are RSA")
    return key


def cert_id_of(cert: x509.Certificate) -> str:
    """ACP's ``certId``: the certificate's serial number written in decimal."""
    return str(cert.serial_number)


def unionpay_common_name(seq: int, company: str = UNIONPAY_COMPANY) -> str:
    return f"041@Z12@{company}@{seq:08d}"


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise AcpError("bad_cert_subject", "the certificate subject has no single CN")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _check_window(cert: x509.Certificate, now: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AcpError(
            "cert_expired",
            f"{what} valid {cert.not_valid_before_utc:%Y-%m-%d} .. "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not at {now:%Y-%m-%d %H:%M:%S}Z",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_issued(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise AcpError("bad_cert_chain", f"{what} is not issued by the configured CA") from exc


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """The configured root and intermediate, checked against each other when built."""

    root: x509.Certificate
    intermediate: x509.Certificate
    company: str = UNIONPAY_COMPANY

    def __post_init__(self) -> None:
        _check_issued(self.root, self.root, "the root")
        _check_issued(self.intermediate, self.root, "the intermediate")
        if not (_is_ca(self.root) and _is_ca(self.intermediate)):
            raise AcpError("bad_cert_chain", "the configured root and intermediate must be CAs")

    @classmethod
    def from_pem(cls, root_pem: bytes, intermediate_pem: bytes) -> TrustAnchors:
        return cls(load_certificate(root_pem), load_certificate(intermediate_pem))

    def verify(self, leaf: x509.Certificate, now: float) -> None:
        """Raise ``AcpError`` (bad_cert_chain, cert_expired, bad_cert, bad_cert_subject) unless
        ``leaf`` is UnionPay's signing certificate under these anchors at Unix time ``now``."""
        _check_issued(leaf, self.intermediate, "signPubKeyCert")
        at = datetime.fromtimestamp(now, UTC)
        _check_window(leaf, at, "signPubKeyCert")
        _check_window(self.intermediate, at, "the intermediate")
        _check_window(self.root, at, "the root")
        if _is_ca(leaf):
            raise AcpError("bad_cert", "signPubKeyCert is a CA certificate")
        key = leaf.public_key()
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
            raise AcpError("bad_cert", f"signPubKeyCert must hold an RSA key >= {MIN_KEY_BITS}")
        parts = _common_name(leaf).split("@")
        if len(parts) < 3 or parts[2] != self.company:
            raise AcpError("bad_cert_subject", "signPubKeyCert's CN does not name UnionPay")


class SignCertVerifier:
    """Chain checks with a small cache of parsed, chain-verified certificates.

    The same signing certificate arrives with every message; re-parsing and re-verifying its
    chain each time costs an RSA verification per notify for nothing. The cache keeps only the
    outcome of the *time-independent* checks; validity windows are checked on every call."""

    def __init__(self, anchors: TrustAnchors, *, size: int = 8) -> None:
        self.anchors = anchors
        self._size = size
        self._verified: OrderedDict[str, x509.Certificate] = OrderedDict()

    def verify_pem(self, pem: str, now: float) -> rsa.RSAPublicKey:
        cert = self._verified.get(pem)
        if cert is None:
            cert = load_certificate(pem)
            self.anchors.verify(cert, now)
            self._verified[pem] = cert
            while len(self._verified) > self._size:
                self._verified.popitem(last=False)
        else:
            self._verified.move_to_end(pem)
            at = datetime.fromtimestamp(now, UTC)
            _check_window(cert, at, "signPubKeyCert")
            _check_window(self.anchors.intermediate, at, "the intermediate")
            _check_window(self.anchors.root, at, "the root")
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # checked by anchors.verify
        return key


# -- generation (simulator and tests) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCert:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_id(self) -> str:
        return cert_id_of(self.cert)


def issue_certificate(
    *,
    common_name: str,
    organization: str,
    issuer: IssuedCert | None,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    key: rsa.RSAPrivateKey | None = None,
    serial: int | None = None,
) -> IssuedCert:
    """One X.509 v3 certificate; ``issuer=None`` makes it self-signed (a root)."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=MIN_KEY_BITS)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    signer_key = issuer.key if issuer else key
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial or secrets.randbits(63) | (1 << 62))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
            critical=True,
        )
    )
    return IssuedCert(key, builder.sign(signer_key, hashes.SHA256()))


def issue_unionpay_sign_cert(
    intermediate: IssuedCert, now: datetime, *, seq: int = 1, days: int = 730
) -> IssuedCert:
    """UnionPay's message-signing certificate (rotation = a new one from the same CA)."""
    return issue_certificate(
        common_name=unionpay_common_name(seq),
        organization=UNIONPAY_COMPANY,
        issuer=intermediate,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=days),
        ca=False,
    )


def issue_merchant_cert(intermediate: IssuedCert, mer_id: str, now: datetime) -> IssuedCert:
    """A merchant's signing certificate; its serial (decimal) is the merchant's certId."""
    return issue_certificate(
        common_name=f"041@Z12@{mer_id}@00000001",
        organization=f"Merchant {mer_id}",
        issuer=intermediate,
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=730),
        ca=False,
    )


@dataclass(frozen=True, slots=True)
class TestPki:
    """Root CA → intermediate CA → UnionPay's signing certificate."""

    __test__ = False  # not a pytest class

    root: IssuedCert
    intermediate: IssuedCert
    signing: IssuedCert

    @classmethod
    def generate(cls, now: datetime) -> TestPki:
        root = issue_certificate(
            common_name="Simulated ACP Root CA",
            organization="Simulated Certification Authority",
            issuer=None,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=20 * 365),
            ca=True,
        )
        intermediate = issue_certificate(
            common_name="Simulated ACP OCA",
            organization="Simulated Certification Authority",
            issuer=root,
            not_before=now - timedelta(days=1),
            not_after=now + timedelta(days=10 * 365),
            ca=True,
        )
        return cls(root, intermediate, issue_unionpay_sign_cert(intermediate, now))

    @property
    def anchors(self) -> TrustAnchors:
        return TrustAnchors(self.root.cert, self.intermediate.cert)
