"""UnionPay's signing certificate must chain to the configured root and intermediate, be valid
now, and name UnionPay — each failure with its own reason."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from channels.unionpay import (
    UNIONPAY_COMPANY,
    AcpError,
    IssuedCert,
    SignCertVerifier,
    TestPki,
    TrustAnchors,
    cert_id_of,
    issue_certificate,
    issue_unionpay_sign_cert,
    unionpay_common_name,
)


def _reason(pki: TestPki, leaf: IssuedCert, now: float) -> str:
    with pytest.raises(AcpError) as info:
        pki.anchors.verify(leaf.cert, now)
    return info.value.reason


def test_the_signing_certificate_chains(pki: TestPki, now_dt: datetime) -> None:
    pki.anchors.verify(pki.signing.cert, now_dt.timestamp())
    key = SignCertVerifier(pki.anchors).verify_pem(
        pki.signing.cert_pem().decode(), now_dt.timestamp()
    )
    assert key.public_numbers() == pki.signing.key.public_key().public_numbers()


def test_a_certificate_of_another_root_is_refused(
    pki: TestPki, other_pki: TestPki, now_dt: datetime
) -> None:
    # Same names, same shape, another CA: only the signature on the link tells them apart.
    assert other_pki.signing.cert.issuer == pki.intermediate.cert.subject
    assert _reason(pki, other_pki.signing, now_dt.timestamp()) == "bad_cert_chain"


def test_a_self_signed_certificate_named_like_unionpay_is_refused(
    pki: TestPki, now_dt: datetime
) -> None:
    forged = issue_certificate(
        common_name=unionpay_common_name(1),
        organization=UNIONPAY_COMPANY,
        issuer=None,
        not_before=now_dt - timedelta(days=1),
        not_after=now_dt + timedelta(days=30),
        ca=False,
    )
    assert _reason(pki, forged, now_dt.timestamp()) == "bad_cert_chain"


def test_a_certificate_signed_directly_by_the_root_is_refused(
    pki: TestPki, now_dt: datetime
) -> None:
    skipped = issue_unionpay_sign_cert(pki.root, now_dt)
    assert _reason(pki, skipped, now_dt.timestamp()) == "bad_cert_chain"


def test_an_expired_certificate_is_refused(pki: TestPki, now_dt: datetime) -> None:
    expired = issue_certificate(
        common_name=unionpay_common_name(7),
        organization=UNIONPAY_COMPANY,
        issuer=pki.intermediate,
        not_before=now_dt - timedelta(days=400),
        not_after=now_dt - timedelta(seconds=1),
        ca=False,
    )
    assert _reason(pki, expired, now_dt.timestamp()) == "cert_expired"
    # valid now, but not any more a little later
    later = (now_dt + timedelta(days=800)).timestamp()
    assert _reason(pki, pki.signing, later) == "cert_expired"
    # and not yet valid before its window
    earlier = (now_dt - timedelta(days=2)).timestamp()
    assert _reason(pki, pki.signing, earlier) == "cert_expired"


def test_the_cache_still_checks_the_validity_window(pki: TestPki, now_dt: datetime) -> None:
    verifier = SignCertVerifier(pki.anchors)
    pem = pki.signing.cert_pem().decode()
    verifier.verify_pem(pem, now_dt.timestamp())
    with pytest.raises(AcpError) as info:
        verifier.verify_pem(pem, (now_dt + timedelta(days=800)).timestamp())
    assert info.value.reason == "cert_expired"


def test_a_certificate_not_naming_unionpay_is_refused(
    pki: TestPki, merchant: IssuedCert, now_dt: datetime
) -> None:
    # A merchant's certificate from the very same intermediate chains perfectly.
    assert _reason(pki, merchant, now_dt.timestamp()) == "bad_cert_subject"
    # The company name in another @-field of the CN is not enough.
    elsewhere = issue_certificate(
        common_name=f"041@{UNIONPAY_COMPANY}@Z12@00000001",
        organization=UNIONPAY_COMPANY,
        issuer=pki.intermediate,
        not_before=now_dt - timedelta(days=1),
        not_after=now_dt + timedelta(days=30),
        ca=False,
    )
    assert _reason(pki, elsewhere, now_dt.timestamp()) == "bad_cert_subject"


def test_a_ca_certificate_cannot_sign_messages(pki: TestPki, now_dt: datetime) -> None:
    ca_leaf = issue_certificate(
        common_name=unionpay_common_name(3),
        organization=UNIONPAY_COMPANY,
        issuer=pki.intermediate,
        not_before=now_dt - timedelta(days=1),
        not_after=now_dt + timedelta(days=30),
        ca=True,
    )
    assert _reason(pki, ca_leaf, now_dt.timestamp()) == "bad_cert"


def test_garbage_instead_of_a_certificate(pki: TestPki, now_dt: datetime) -> None:
    verifier = SignCertVerifier(pki.anchors)
    for text in ("", "hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(AcpError) as info:
            verifier.verify_pem(text, now_dt.timestamp())
        assert info.value.reason == "bad_cert"


def test_anchors_that_do_not_belong_together_are_refused(pki: TestPki, other_pki: TestPki) -> None:
    with pytest.raises(AcpError) as info:
        TrustAnchors(pki.root.cert, other_pki.intermediate.cert)
    assert info.value.reason == "bad_cert_chain"
    with pytest.raises(AcpError):
        TrustAnchors(pki.root.cert, pki.signing.cert)  # not a CA


def test_the_generated_shape(pki: TestPki, merchant: IssuedCert) -> None:
    cn = pki.signing.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(cn).split("@")[2] == UNIONPAY_COMPANY
    assert pki.signing.cert.issuer == pki.intermediate.cert.subject
    assert pki.intermediate.cert.issuer == pki.root.cert.subject
    assert isinstance(pki.signing.cert.signature_hash_algorithm, hashes.SHA256)
    basic = pki.intermediate.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca
    # certId is the serial in decimal
    assert cert_id_of(merchant.cert) == str(merchant.cert.serial_number)
    assert merchant.cert_id.isdigit()
