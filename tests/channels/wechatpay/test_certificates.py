"""Platform keys: several certificates by serial, public-key mode, /v3/certificates."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from channels.wechatpay import (
    PlatformCert,
    PlatformKeys,
    ProtocolError,
    SignatureError,
    WeChatPayError,
    build_certificates_response,
    load_certificate,
    parse_certificates_response,
    serial_hex,
    sign_response,
)
from channels.wechatpay.keygen import issue_certificate, make_ca, new_rsa_key
from tests.channels.wechatpay.support import WxWorld


def test_serials_are_forty_upper_case_hex_digits(wx: WxWorld) -> None:
    for serial in (*wx.keys.certs, wx.merchant.merchant_serial):
        assert len(serial) == 40
        assert serial == serial.upper()
        int(serial, 16)


def test_key_for_matches_the_serial_exactly(wx: WxWorld) -> None:
    now = time.time()
    serial = wx.signer.serial
    assert (
        wx.keys.key_for(serial, now).public_numbers()
        == wx.signer.private_key.public_key().public_numbers()
    )
    for other in (serial.lower(), str(int(serial, 16)), "0" + serial, serial + " ", ""):
        with pytest.raises(SignatureError) as info:
            wx.keys.key_for(other, now)
        assert info.value.reason == "unknown_serial"


def test_expired_certificate_is_refused(wx: WxWorld) -> None:
    serial = wx.signer.serial
    later = time.time() + 6 * 365 * 86400
    with pytest.raises(SignatureError) as info:
        wx.keys.key_for(serial, later)
    assert info.value.reason == "cert_expired"


def test_public_key_mode(wx: WxWorld) -> None:
    keys = wx.keys
    assert keys.public_key_id is not None and keys.public_key_id.startswith("PUB_KEY_ID_")
    key = keys.key_for(keys.public_key_id, time.time())
    assert key.public_numbers() == wx.pub_signer.private_key.public_key().public_numbers()
    assert keys.public_key_id in keys.serials
    only_public = PlatformKeys({}, keys.public_key_id, keys.public_key)
    assert len(only_public) == 1
    with pytest.raises(SignatureError):
        only_public.key_for(wx.signer.serial, time.time())


def test_verify_uses_the_named_key(wx: WxWorld) -> None:
    body = b'{"x":1}'
    now = int(time.time())
    for signer in (wx.signer, wx.pub_signer):
        signed = sign_response(
            body, serial=signer.serial, private_key=signer.private_key, timestamp=now, nonce="n"
        )
        wx.keys.verify(signed, body, now)
    # the public key's signature under the certificate's serial: known serial, wrong key
    crossed = sign_response(
        body,
        serial=wx.signer.serial,
        private_key=wx.pub_signer.private_key,
        timestamp=now,
        nonce="n",
    )
    with pytest.raises(SignatureError) as info:
        wx.keys.verify(crossed, body, now)
    assert info.value.reason == "bad_signature"


def test_certificates_response_round_trip(wx: WxWorld) -> None:
    now = time.time()
    listed = wx.provider.listed(now)
    body = build_certificates_response(
        listed, wx.merchant.apiv3_key, ["abcdefghijkl"] * len(listed)
    )
    parsed = parse_certificates_response(body, wx.merchant.apiv3_key)
    assert [c.serial for c in parsed] == [c.serial for c in listed]
    entry = orjson.loads(body)["data"][0]
    assert entry["effective_time"].endswith("+08:00")
    assert set(entry["encrypt_certificate"]) == {
        "algorithm",
        "ciphertext",
        "associated_data",
        "nonce",
    }
    with pytest.raises(WeChatPayError) as info:
        parse_certificates_response(body, wx.other.apiv3_key)
    assert info.value.reason == "decrypt_failed"


def test_certificates_response_with_a_mislabelled_serial(wx: WxWorld) -> None:
    listed = wx.provider.listed(time.time())
    document = orjson.loads(build_certificates_response(listed, wx.merchant.apiv3_key, ["n" * 12]))
    document["data"][0]["serial_no"] = "1" * 40
    with pytest.raises(ProtocolError):
        parse_certificates_response(orjson.dumps(document), wx.merchant.apiv3_key)


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"data":{}}', b'{"data":[{"serial_no":1}]}', b'{"data":[{"serial_no":"A"}]}'],
)
def test_certificates_response_malformed(wx: WxWorld, body: bytes) -> None:
    with pytest.raises(WeChatPayError):
        parse_certificates_response(body, wx.merchant.apiv3_key)


def _foreign_cert(days: int = 30, offset_days: int = -1) -> PlatformCert:
    now = datetime.now(UTC)
    ca_key, ca_cert = make_ca("Not Tenpay", now, days=365)
    cert = issue_certificate(
        ca_key,
        ca_cert,
        new_rsa_key().public_key(),
        common_name="impostor",
        org="impostor",
        not_before=now + timedelta(days=offset_days),
        not_after=now + timedelta(days=offset_days + days),
    )
    return PlatformCert(serial_hex(cert), cert)


def test_with_certs_admits_only_ca_issued_valid_certificates(wx: WxWorld) -> None:
    now = time.time()
    assert wx.keys.ca is not None
    fresh = wx.keys.with_certs(wx.provider.listed(now), now)
    assert fresh.serials == wx.keys.serials
    with pytest.raises(SignatureError) as info:
        wx.keys.with_certs([_foreign_cert()], now)
    assert info.value.reason == "bad_cert_chain"
    no_ca = PlatformKeys({}, None, None, None)
    assert len(no_ca.with_certs([_foreign_cert()], now)) == 1
    with pytest.raises(SignatureError) as info:
        no_ca.with_certs([_foreign_cert(days=1, offset_days=-3)], now)
    assert info.value.reason == "cert_expired"


def test_with_certs_drops_expired_ones() -> None:
    now = time.time()
    short = _foreign_cert(days=2)
    keys = PlatformKeys({short.serial: short})
    assert len(keys.with_certs([], now)) == 1
    assert len(keys.with_certs([], now + 3 * 86400)) == 0


def test_load_certificate_refuses_garbage() -> None:
    with pytest.raises(ProtocolError):
        load_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
