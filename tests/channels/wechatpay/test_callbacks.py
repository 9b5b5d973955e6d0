"""Callback verification: every check, in the spec's order, with stable reason codes."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from channels.model import CallbackEvent, CallbackKind, CallbackRejected, Provider
from channels.wechatpay import ack, verify_callback
from channels.wechatpay.signing import rsa_sign
from tests.channels.wechatpay.support import OTHER_APPID, OTHER_MCHID, WxWorld


def _verify(
    wx: WxWorld,
    headers: dict[str, str],
    body: bytes,
    now: float | None = None,
    accept: set[CallbackKind] | None = None,
) -> CallbackEvent:
    policy = wx.policy() if accept is None else wx.policy(accept=accept)
    moment = time.time() if now is None else now
    return verify_callback(headers, body, moment, keys=wx.keys, policy=policy)


def _rejected(
    wx: WxWorld,
    headers: dict[str, str],
    body: bytes,
    now: float | None = None,
    accept: set[CallbackKind] | None = None,
) -> CallbackRejected:
    with pytest.raises(CallbackRejected) as info:
        _verify(wx, headers, body, now, accept)
    return info.value


def test_payment_event(wx: WxWorld) -> None:
    headers, body = wx.callback()
    event = _verify(wx, headers, body)
    assert event.provider is Provider.WECHATPAY
    assert event.channel == "wechatpay-test"
    assert event.kind is CallbackKind.PAYMENT
    assert (event.event_id, event.status, event.succeeded) == (
        "EV-2026112000000001",
        "SUCCESS",
        True,
    )
    assert (event.out_trade_no, event.provider_ref) == (
        "FS20261120000001",
        "4200002026112000000001",
    )
    assert (event.amount_fen, event.paid_fen, event.refund_fen) == (20000, 20000, None)
    assert event.raw["payer"]["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


@pytest.mark.parametrize("status", ["SUCCESS", "ABNORMAL", "CLOSED"])
def test_refund_events(wx: WxWorld, status: str) -> None:
    body = wx.body(f"REFUND.{status}", wx.refund(refund_status=status))
    event = _verify(wx, wx.headers(body), body)
    assert event.kind is CallbackKind.REFUND
    assert (event.status, event.succeeded) == (status, status == "SUCCESS")
    assert (event.out_refund_no, event.refund_fen, event.amount_fen) == (
        "FS20261120000001-R1",
        5000,
        20000,
    )


def test_public_key_signed_callback(wx: WxWorld) -> None:
    _, body = wx.callback()
    assert _verify(wx, wx.headers(body, signer=wx.pub_signer), body).succeeded


# -- case 1: headers ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["signature", "timestamp", "nonce", "serial"])
def test_missing_or_empty_header(wx: WxWorld, name: str) -> None:
    headers, body = wx.callback()
    assert (
        _rejected(wx, {k: v for k, v in headers.items() if k != f"wechatpay-{name}"}, body).reason
        == "missing_header"
    )
    assert _rejected(wx, {**headers, f"wechatpay-{name}": ""}, body).reason == "missing_header"


def test_non_numeric_timestamp(wx: WxWorld) -> None:
    headers, body = wx.callback()
    assert (
        _rejected(wx, {**headers, "wechatpay-timestamp": "12:00"}, body).reason == "bad_timestamp"
    )


# -- case 2: no downgrade ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["WECHATPAY2-SHA1-RSA2048", "", "wechatpay2-sha256-rsa2048", None])
def test_other_signature_type(wx: WxWorld, kind: str | None) -> None:
    headers, body = wx.callback()
    headers = {k: v for k, v in headers.items() if k != "wechatpay-signature-type"}
    if kind is not None:
        headers["wechatpay-signature-type"] = kind
    assert _rejected(wx, headers, body).reason == "signature_type"


# -- case 3: body changed after signing ------------------------------------------------------


def test_body_changed_after_signing(wx: WxWorld) -> None:
    headers, body = wx.callback()
    document = orjson.loads(body)
    changed = [
        body.replace(b'"EV-', b'"EW-', 1),  # one byte
        body + b" ",  # whitespace
        body.replace(b",", b", ", 1),
        orjson.dumps(dict(reversed(list(document.items())))),  # key order
        orjson.dumps(document, option=orjson.OPT_INDENT_2),
    ]
    for variant in changed:
        assert variant != body
        assert _rejected(wx, headers, variant).reason == "bad_signature"


# -- case 4: freshness ------------------------------------------------------------------------


def test_timestamp_window(wx: WxWorld) -> None:
    _, body = wx.callback()
    now = time.time()
    for offset, ok in ((-299, True), (299, True), (-301, False), (301, False), (-86400, False)):
        headers = wx.headers(body, timestamp=int(now) + offset)
        if ok:
            assert _verify(wx, headers, body, now=int(now)).succeeded
        else:
            assert _rejected(wx, headers, body, now=int(now)).reason == "stale_timestamp"


def test_signature_is_checked_before_freshness(wx: WxWorld) -> None:
    _, body = wx.callback()
    headers = wx.headers(body, timestamp=int(time.time()) - 3600)
    assert _rejected(wx, headers, body + b"\n").reason == "bad_signature"


# -- cases 6, 7: keys and signature encoding ---------------------------------------------------


def test_known_serial_signed_with_another_key(wx: WxWorld) -> None:
    _, body = wx.callback()
    headers = wx.headers(body, signer=wx.pub_signer)
    headers["wechatpay-serial"] = wx.signer.serial
    assert _rejected(wx, headers, body).reason == "bad_signature"


def test_serial_in_decimal_or_lower_case_is_unknown(wx: WxWorld) -> None:
    headers, body = wx.callback()
    serial = headers["wechatpay-serial"]
    for written in (str(int(serial, 16)), serial.lower(), "PUB_KEY_ID_0000"):
        assert (
            _rejected(wx, {**headers, "wechatpay-serial": written}, body).reason == "unknown_serial"
        )


def test_expired_certificate(wx: WxWorld) -> None:
    _, body = wx.callback()
    later = time.time() + 6 * 365 * 86400
    headers = wx.headers(body, timestamp=int(later))
    assert _rejected(wx, headers, body, now=later).reason == "cert_expired"


def test_signature_not_base64_or_truncated(wx: WxWorld) -> None:
    headers, body = wx.callback()
    good = headers["wechatpay-signature"]
    for bad in (good[:-4], good[: len(good) // 2], "%%%" + good[3:], good + "AAAA"):
        assert (
            _rejected(wx, {**headers, "wechatpay-signature": bad}, body).reason == "bad_signature"
        )


# -- case 8: envelope ----------------------------------------------------------------------


def _signed(wx: WxWorld, body: bytes) -> tuple[dict[str, str], bytes]:
    return wx.headers(body), body


def test_malformed_envelopes(wx: WxWorld) -> None:
    _, good = wx.callback()
    document = orjson.loads(good)
    cases = {
        b'{"id": "EV-1", "event_type": "TRANSACTION.SUCCESS"': "bad_json",
        b"[]": "bad_json",
        orjson.dumps({**document, "id": ""}): "bad_json",
        orjson.dumps({k: v for k, v in document.items() if k != "resource"}): "bad_resource",
        orjson.dumps({**document, "resource_type": "plain-resource"}): "bad_resource",
        orjson.dumps(
            {**document, "resource": {**document["resource"], "algorithm": "AEAD_SM4_GCM"}}
        ): "bad_resource",
        orjson.dumps({**document, "resource": "text"}): "bad_resource",
        orjson.dumps(
            {**document, "resource": {**document["resource"], "nonce": ""}}
        ): "bad_resource",
    }
    for body, reason in cases.items():
        assert _rejected(wx, *_signed(wx, body)).reason == reason, body


# -- case 9: decryption ----------------------------------------------------------------------


def _flip(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x80
    return base64.b64encode(bytes(raw)).decode()


def test_decryption_failures(wx: WxWorld) -> None:
    _, good = wx.callback()
    document = orjson.loads(good)
    resource = document["resource"]
    variants = [
        {**resource, "ciphertext": _flip(resource["ciphertext"], -1)},  # the tag
        {**resource, "ciphertext": _flip(resource["ciphertext"], 0)},  # the ciphertext
        {**resource, "associated_data": "refund"},
        {**resource, "nonce": resource["nonce"][::-1]},
    ]
    for variant in variants:
        body = orjson.dumps({**document, "resource": variant})
        assert _rejected(wx, *_signed(wx, body)).reason == "decrypt_failed"
    other_key = wx.body("TRANSACTION.SUCCESS", wx.payment(), apiv3_key=wx.other.apiv3_key)
    assert _rejected(wx, *_signed(wx, other_key)).reason == "decrypt_failed"


def test_decrypted_resource_not_json(wx: WxWorld) -> None:
    from channels.wechatpay import EncryptedResource

    _, good = wx.callback()
    document = orjson.loads(good)
    sealed = EncryptedResource.seal(
        wx.merchant.apiv3_key,
        b"not json",
        associated_data="transaction",
        nonce="abcdefghijkl",
        original_type="transaction",
    )
    body = orjson.dumps({**document, "resource": sealed.to_json()})
    assert _rejected(wx, *_signed(wx, body)).reason == "bad_resource"


# -- case 10: not our merchant ----------------------------------------------------------------


def test_other_mchid_or_appid_alerts(wx: WxWorld) -> None:
    for resource in (wx.payment(mchid=OTHER_MCHID), wx.payment(appid=OTHER_APPID)):
        rejected = _rejected(wx, *_signed(wx, wx.body("TRANSACTION.SUCCESS", resource)))
        assert (rejected.reason, rejected.alert) == ("unknown_merchant", True)
    refund = wx.refund(mchid=OTHER_MCHID)
    rejected = _rejected(wx, *_signed(wx, wx.body("REFUND.SUCCESS", refund)))
    assert (rejected.reason, rejected.alert) == ("unknown_merchant", True)


# -- case 12 (the provider half): currency ---------------------------------------------------


def test_currency_not_cny_alerts(wx: WxWorld) -> None:
    body = wx.body("TRANSACTION.SUCCESS", wx.payment(currency="USD"))
    rejected = _rejected(wx, *_signed(wx, body))
    assert (rejected.reason, rejected.alert) == ("bad_amount", True)


def test_amount_not_an_integer(wx: WxWorld) -> None:
    resource = wx.payment()
    resource["amount"]["total"] = "200.00"
    assert (
        _rejected(wx, *_signed(wx, wx.body("TRANSACTION.SUCCESS", resource))).reason
        == "bad_resource"
    )


# -- case 13: event type against the resource ------------------------------------------------


def test_event_type_must_match_the_state(wx: WxWorld) -> None:
    for state in ("NOTPAY", "CLOSED", "REFUND", "PAYERROR"):
        body = wx.body("TRANSACTION.SUCCESS", wx.payment(trade_state=state))
        assert _rejected(wx, *_signed(wx, body)).reason == "wrong_event_type"
    body = wx.body("REFUND.SUCCESS", wx.refund(refund_status="ABNORMAL"))
    assert _rejected(wx, *_signed(wx, body)).reason == "wrong_event_type"
    body = wx.body("TRANSACTION.CLOSED", wx.payment(trade_state="CLOSED"))
    assert _rejected(wx, *_signed(wx, body)).reason == "wrong_event_type"


def test_refund_resource_as_a_payment_event(wx: WxWorld) -> None:
    as_transaction = wx.body(
        "TRANSACTION.SUCCESS",
        wx.refund(),
        original_type="transaction",
        associated_data="transaction",
    )
    assert _rejected(wx, *_signed(wx, as_transaction)).reason == "wrong_event_type"
    mislabelled = wx.body("TRANSACTION.SUCCESS", wx.refund(), original_type="refund")
    assert _rejected(wx, *_signed(wx, mislabelled)).reason == "wrong_event_type"


def test_refund_on_a_payment_only_endpoint(wx: WxWorld) -> None:
    headers, body = wx.callback("REFUND.SUCCESS")
    assert _rejected(wx, headers, body, accept={CallbackKind.PAYMENT}).reason == "wrong_event_type"


# -- order ---------------------------------------------------------------------------------


def test_checks_run_in_the_spec_order(wx: WxWorld) -> None:
    headers, body = wx.callback()
    bad_json = b"{"
    # a missing header beats everything else
    assert (
        _rejected(wx, {k: v for k, v in headers.items() if k != "wechatpay-nonce"}, bad_json).reason
        == "missing_header"
    )
    # the signature type comes before the serial
    broken = {**headers, "wechatpay-signature-type": "X", "wechatpay-serial": "1"}
    assert _rejected(wx, broken, body).reason == "signature_type"
    # the serial before the signature
    assert _rejected(wx, {**headers, "wechatpay-serial": "1"}, bad_json).reason == "unknown_serial"
    # nothing the body says is looked at before the signature verifies
    assert _rejected(wx, headers, bad_json).reason == "bad_signature"
    # freshness before the JSON
    stale = wx.headers(bad_json, timestamp=int(time.time()) - 600)
    assert _rejected(wx, stale, bad_json).reason == "stale_timestamp"
    # decryption before the merchant check
    other = wx.body(
        "TRANSACTION.SUCCESS", wx.payment(mchid=OTHER_MCHID), apiv3_key=wx.other.apiv3_key
    )
    assert _rejected(wx, *_signed(wx, other)).reason == "decrypt_failed"
    # the merchant before the event type
    mixed = wx.body("TRANSACTION.SUCCESS", wx.payment(mchid=OTHER_MCHID, trade_state="NOTPAY"))
    assert _rejected(wx, *_signed(wx, mixed)).reason == "unknown_merchant"


def test_signature_over_the_raw_body_not_a_reserialisation(wx: WxWorld) -> None:
    resource = wx.payment()
    body = wx.body("TRANSACTION.SUCCESS", resource)
    spaced = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
    headers = wx.headers(spaced)
    assert _verify(wx, headers, spaced).succeeded
    assert _rejected(wx, headers, body).reason == "bad_signature"


def test_ack() -> None:
    assert ack(True).status == 204 and ack(True).body == b""
    failed = ack(False, "bad_signature")
    assert failed.status >= 400
    assert failed.content_type == "application/json"
    assert orjson.loads(failed.body) == {"code": "FAIL", "message": "bad_signature"}


def test_rsa_sign_helper_is_what_the_headers_carry(wx: WxWorld) -> None:
    headers, body = wx.callback()
    message = (
        f"{headers['wechatpay-timestamp']}\n{headers['wechatpay-nonce']}\n".encode() + body + b"\n"
    )
    assert rsa_sign(wx.signer.private_key, message) == headers["wechatpay-signature"]


def test_payment_resource_without_appid_is_malformed(wx: WxWorld) -> None:
    resource = wx.payment()
    del resource["appid"]
    rejected = _rejected(wx, *_signed(wx, wx.body("TRANSACTION.SUCCESS", resource)))
    assert (rejected.reason, rejected.alert) == ("bad_resource", False)
