"""5.1.0 signatures against a hand computation, and every way a signature must fail."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from channels.unionpay import (
    AcpError,
    IssuedCert,
    SignCertVerifier,
    SignPolicy,
    TestPki,
    sign_keyed,
    sign_rsa,
    sign_string,
    signed,
    verify_message,
    verify_rsa,
)
from tests.channels.unionpay.support import hand_sign, notify_fields, signed_by


def _reason(fields: dict[str, str], pki: TestPki, now: float, policy: SignPolicy | None) -> str:
    with pytest.raises(AcpError) as info:
        verify_message(fields, SignCertVerifier(pki.anchors), now, policy or SignPolicy())
    return info.value.reason


def test_the_sign_string_is_sorted_and_raw() -> None:
    fields = {"b": "2", "a": "x y&z", "signature": "ignored", "c": ""}
    assert sign_string(fields) == "a=x y&z&b=2&c="


def test_our_signature_equals_the_hand_made_one(merchant: IssuedCert) -> None:
    # PKCS#1 v1.5 is deterministic: the same recipe gives the same bytes.
    fields = notify_fields(orderDesc="92号汽油 加满", certId=merchant.cert_id)
    assert sign_rsa(fields, merchant.key) == hand_sign(fields, merchant.key)


def test_the_signature_covers_the_hex_text_not_the_string(merchant: IssuedCert) -> None:
    fields = notify_fields()
    raw = base64.b64decode(sign_rsa(fields, merchant.key))
    text = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    hexed = hashlib.sha256(text.encode()).hexdigest()
    merchant.key.public_key().verify(raw, hexed.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_a_hand_signed_notify_verifies(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    verify_message(fields, SignCertVerifier(pki.anchors), now_dt.timestamp(), SignPolicy())


def test_signed_adds_a_signature_the_verifier_accepts(merchant: IssuedCert) -> None:
    fields = signed(notify_fields(signature="stale"), merchant.key)
    assert fields["signature"] != "stale"
    verify_rsa(fields, merchant.key.public_key())
    with pytest.raises(AcpError):
        signed(notify_fields(signMethod="11"), merchant.key)


@pytest.mark.parametrize(
    ("field", "value"),
    [("txnAmt", "20001"), ("orderId", "FS20261120000009"), ("respCode", "01"), ("merId", "1")],
)
def test_a_field_changed_after_signing_is_refused(
    pki: TestPki, now_dt: datetime, field: str, value: str
) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    fields[field] = value
    assert _reason(fields, pki, now_dt.timestamp(), None) == "bad_signature"


def test_an_added_field_is_refused(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    fields["reqReserved"] = "x"
    assert _reason(fields, pki, now_dt.timestamp(), None) == "bad_signature"


def test_a_sha1_signature_on_a_510_message_is_a_downgrade(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(), pki.signing, algorithm="sha1")
    assert _reason(fields, pki, now_dt.timestamp(), None) == "signature_type"


def test_a_510_signature_by_another_key_is_refused(
    pki: TestPki, merchant: IssuedCert, now_dt: datetime
) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    fields["signature"] = hand_sign(fields, merchant.key)
    assert _reason(fields, pki, now_dt.timestamp(), None) == "bad_signature"


@pytest.mark.parametrize("mangle", ["not base64!", "", "truncate", "AAAA"])
def test_a_broken_signature_is_refused(pki: TestPki, now_dt: datetime, mangle: str) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    fields["signature"] = fields["signature"][:40] if mangle == "truncate" else mangle
    expected = "missing_field" if mangle == "" else "bad_signature"
    assert _reason(fields, pki, now_dt.timestamp(), None) == expected


def test_the_version_must_be_510(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(version="5.0.0"), pki.signing)
    assert _reason(fields, pki, now_dt.timestamp(), None) == "bad_version"


def test_no_certificate(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    del fields["signPubKeyCert"]
    assert _reason(fields, pki, now_dt.timestamp(), None) == "missing_field"


def test_the_certificate_is_checked_before_the_signature(
    pki: TestPki, other_pki: TestPki, now_dt: datetime
) -> None:
    # correctly signed by its own key, but that key's certificate chains to another root
    fields = signed_by(notify_fields(), other_pki.signing)
    assert _reason(fields, pki, now_dt.timestamp(), None) == "bad_cert_chain"


@pytest.mark.parametrize("method", ["11", "12"])
def test_keyed_methods_only_when_configured(pki: TestPki, now_dt: datetime, method: str) -> None:
    fields = notify_fields(signMethod=method)
    fields["signature"] = sign_keyed(fields, "the-secure-key", method)
    assert _reason(fields, pki, now_dt.timestamp(), None) == "sign_method"
    policy = SignPolicy(frozenset({"01", method}), "the-secure-key")
    verify_message(fields, SignCertVerifier(pki.anchors), now_dt.timestamp(), policy)
    other = SignPolicy(frozenset({"01", method}), "another-key")
    assert _reason(fields, pki, now_dt.timestamp(), other) == "bad_signature"


def test_the_keyed_sha256_recipe() -> None:
    fields = {"a": "1", "b": "2", "signMethod": "11"}
    inner = hashlib.sha256(b"k").hexdigest()
    expected = hashlib.sha256(f"a=1&b=2&signMethod=11&{inner}".encode()).hexdigest()
    assert sign_keyed(fields, "k", "11") == expected


def test_an_unknown_sign_method(pki: TestPki, now_dt: datetime) -> None:
    fields = signed_by(notify_fields(signMethod="02"), pki.signing)
    assert _reason(fields, pki, now_dt.timestamp(), None) == "sign_method"
    with pytest.raises(AcpError):
        SignPolicy(frozenset({"01", "99"}))
    with pytest.raises(AcpError):
        SignPolicy(frozenset({"01", "11"}))  # no secure key
