"""Notify verification: the event a good notify becomes, and each reason a bad one is refused."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from channels.model import CallbackKind, CallbackRejected, Provider
from channels.unionpay import (
    ALL_KINDS,
    UNIONPAY_COMPANY,
    IssuedCert,
    NotifyVerifier,
    SignCertVerifier,
    SignPolicy,
    TestPki,
    ack,
    encode_form,
    issue_certificate,
    unionpay_common_name,
)
from tests.channels.unionpay.support import MER_ID, hand_sign, notify_fields, signed_by


def _verifier(pki: TestPki, **kwargs: object) -> NotifyVerifier:
    return NotifyVerifier("unionpay-main", MER_ID, SignCertVerifier(pki.anchors), **kwargs)  # type: ignore[arg-type]


def _rejected(verifier: NotifyVerifier, body: bytes, now: float) -> CallbackRejected:
    with pytest.raises(CallbackRejected) as info:
        verifier.verify(body, now)
    return info.value


def test_a_preauth_notify_becomes_a_hold_event(pki: TestPki, now_dt: datetime) -> None:
    body = encode_form(signed_by(notify_fields(), pki.signing))
    event = _verifier(pki).verify(body, now_dt.timestamp())
    assert event.provider is Provider.UNIONPAY
    assert event.channel == "unionpay-main"
    assert event.kind is CallbackKind.HOLD
    assert event.event_id == event.provider_ref == "782611201015000000011"
    assert event.status == "00"
    assert event.succeeded
    assert event.out_trade_no == "FS20261120000001"
    assert event.amount_fen == 20000
    assert event.raw["confirm_with_query"] is True
    assert "signPubKeyCert" not in event.raw and "signature" not in event.raw


def test_a_refund_notify_names_its_payment_through_req_reserved(
    pki: TestPki, now_dt: datetime
) -> None:
    fields = notify_fields(
        txnType="04",
        txnSubType="00",
        orderId="FS20261120000001R1",
        origQryId="782611201100000000022",
        reqReserved="FS20261120000001",
        txnAmt="3750",
        queryId="782611201200000000033",
    )
    event = _verifier(pki).verify(encode_form(signed_by(fields, pki.signing)), now_dt.timestamp())
    assert event.kind is CallbackKind.REFUND
    assert event.out_trade_no == "FS20261120000001"
    assert event.out_refund_no == "FS20261120000001R1"
    assert event.refund_fen == 3750
    assert event.paid_fen is None


def test_a_failed_payment_notify_is_not_succeeded(pki: TestPki, now_dt: datetime) -> None:
    fields = notify_fields(txnType="01", respCode="64", respMsg="余额不足")
    event = _verifier(pki).verify(encode_form(signed_by(fields, pki.signing)), now_dt.timestamp())
    assert event.kind is CallbackKind.PAYMENT
    assert not event.succeeded
    assert event.paid_fen is None
    assert event.raw["confirm_with_query"] is False


@pytest.mark.parametrize(
    ("txn_type", "kind"),
    [("01", "payment"), ("02", "hold"), ("03", "capture"), ("32", "release"), ("04", "refund")],
)
def test_kind_comes_from_txn_type(pki: TestPki, now_dt: datetime, txn_type: str, kind: str) -> None:
    fields = notify_fields(txnType=txn_type)
    if txn_type not in ("01", "02"):
        fields.update(origQryId="782611201015000000011", reqReserved="FS20261120000001")
    event = _verifier(pki).verify(encode_form(signed_by(fields, pki.signing)), now_dt.timestamp())
    assert event.kind.value == kind
    # a follow-up names its own key (capture/release/refund key) and the payment's
    follow_up = txn_type not in ("01", "02")
    assert event.out_refund_no == ("FS20261120000001" if follow_up else None)


def test_a_refund_notify_on_the_payment_endpoint(pki: TestPki, now_dt: datetime) -> None:
    payments_only = _verifier(pki, kinds=ALL_KINDS - {CallbackKind.REFUND})
    fields = notify_fields(txnType="04", txnSubType="00", origQryId="1", reqReserved="K")
    error = _rejected(
        payments_only, encode_form(signed_by(fields, pki.signing)), now_dt.timestamp()
    )
    assert error.reason == "wrong_event_type"


def test_a_signed_notify_for_another_merchant_alerts(pki: TestPki, now_dt: datetime) -> None:
    body = encode_form(signed_by(notify_fields(merId="898111111111111"), pki.signing))
    error = _rejected(_verifier(pki), body, now_dt.timestamp())
    assert (error.reason, error.alert) == ("unknown_merchant", True)


@pytest.mark.parametrize(
    ("field", "value"), [("txnAmt", "1"), ("orderId", "FS20261120000002"), ("respCode", "00 ")]
)
def test_tampered_fields(pki: TestPki, now_dt: datetime, field: str, value: str) -> None:
    fields = signed_by(notify_fields(), pki.signing)
    fields[field] = value
    error = _rejected(_verifier(pki), encode_form(fields), now_dt.timestamp())
    assert (error.reason, error.alert) == ("bad_signature", False)


def test_a_duplicated_field_is_refused_even_when_the_first_copy_is_signed(
    pki: TestPki, now_dt: datetime
) -> None:
    body = encode_form(signed_by(notify_fields(), pki.signing)) + b"&txnAmt=1"
    assert _rejected(_verifier(pki), body, now_dt.timestamp()).reason == "duplicate_field"


def test_chain_failures(
    pki: TestPki, other_pki: TestPki, merchant: IssuedCert, now_dt: datetime
) -> None:
    now = now_dt.timestamp()
    verifier = _verifier(pki)
    wrong_root = encode_form(signed_by(notify_fields(), other_pki.signing))
    assert _rejected(verifier, wrong_root, now).reason == "bad_cert_chain"
    not_unionpay = encode_form(signed_by(notify_fields(), merchant))
    assert _rejected(verifier, not_unionpay, now).reason == "bad_cert_subject"
    expired = issue_certificate(
        common_name=unionpay_common_name(9),
        organization=UNIONPAY_COMPANY,
        issuer=pki.intermediate,
        not_before=now_dt - timedelta(days=30),
        not_after=now_dt - timedelta(days=1),
        ca=False,
    )
    assert _rejected(verifier, encode_form(signed_by(notify_fields(), expired)), now).reason == (
        "cert_expired"
    )


def test_downgrades(pki: TestPki, now_dt: datetime) -> None:
    now = now_dt.timestamp()
    sha1 = encode_form(signed_by(notify_fields(), pki.signing, algorithm="sha1"))
    assert _rejected(_verifier(pki), sha1, now).reason == "signature_type"
    keyed = notify_fields(signMethod="11")
    keyed["signature"] = hand_sign(keyed, pki.signing.key)
    assert _rejected(_verifier(pki), encode_form(keyed), now).reason == "sign_method"


def test_keyed_notify_when_configured(pki: TestPki, now_dt: datetime) -> None:
    from channels.unionpay import sign_keyed

    fields = notify_fields(signMethod="11")
    fields["signature"] = sign_keyed(fields, "k3y", "11")
    verifier = _verifier(pki, policy=SignPolicy(frozenset({"01", "11"}), "k3y"))
    assert verifier.verify(encode_form(fields), now_dt.timestamp()).succeeded


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"queryId": "<drop>"}, "missing_field"),
        ({"txnAmt": "12.00"}, "bad_amount"),
        ({"currencyCode": "840"}, "bad_amount"),
        ({"txnType": "76"}, "wrong_event_type"),
        ({"txnTime": "2026-11-20"}, "bad_txn_time"),
        ({"txnType": "04"}, "missing_field"),  # a refund without origQryId
    ],
)
def test_bad_content_with_a_good_signature(
    pki: TestPki, now_dt: datetime, overrides: dict[str, str], reason: str
) -> None:
    body = encode_form(signed_by(notify_fields(**overrides), pki.signing))
    assert _rejected(_verifier(pki), body, now_dt.timestamp()).reason == reason


def test_garbage_bodies(pki: TestPki, now_dt: datetime) -> None:
    for body in (b"", b"\xff\xfe", b"{}", b"a=1"):
        error = _rejected(_verifier(pki), body, now_dt.timestamp())
        assert error.reason in {"bad_form", "bad_version"}


def test_ack() -> None:
    assert ack(True).status == 200
    failure = ack(False, "bad_signature: 签名错误")
    assert failure.status == 500
    assert failure.body.startswith(b"bad_signature")
