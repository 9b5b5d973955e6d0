"""Key material on disk: generate once, keep what exists, load what the switch needs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from channels.wechatpay import CredentialsError, generate, load_merchant, merchant_dir, provider_dir
from channels.wechatpay.credentials import read_json
from tests.channels.wechatpay.support import APPID, MCHID, WxWorld


def test_loaded_merchant(wx: WxWorld) -> None:
    m = wx.merchant
    assert (m.mchid, m.appid) == (MCHID, APPID)
    assert len(m.apiv3_key) == 32
    assert len(m.platform.certs) == 1
    assert m.platform.public_key_id is not None
    assert "apiv3_key=" not in repr(m)
    assert "private_key=" not in repr(m)


def test_secret_files_are_private(wx: WxWorld) -> None:
    mdir = wx.merchant_dir
    for name in ("apiclient_key.pem", "apiv3_key"):
        assert (mdir / name).stat().st_mode & 0o077 == 0
    for path in (provider_dir(wx.root) / "platform").glob("*.key.pem"):
        assert path.stat().st_mode & 0o077 == 0


def test_generate_is_idempotent_and_adds_missing_merchants(tmp_path: Path) -> None:
    root = tmp_path / "wechatpay"
    now = time.time()
    assert generate(root, [("1900000200", "wxappid000000001")], now=now) == ["1900000200"]
    first = (merchant_dir(root, "1900000200") / "apiclient_key.pem").read_bytes()
    platform = sorted(p.name for p in (provider_dir(root) / "platform").iterdir())
    created = generate(
        root,
        [("1900000200", "wxappid000000001"), ("1900000201", "wxappid000000002")],
        now=now,
        verify_modes={"1900000201": "public_key"},
    )
    assert created == ["1900000201"]
    assert (merchant_dir(root, "1900000200") / "apiclient_key.pem").read_bytes() == first
    assert sorted(p.name for p in (provider_dir(root) / "platform").iterdir()) == platform
    registry = read_json(provider_dir(root) / "merchants.json")
    assert registry["1900000200"]["verify_mode"] == "certificate"
    assert registry["1900000201"]["verify_mode"] == "public_key"
    with pytest.raises(CredentialsError):
        generate(root, [("1900000202", "x")], now=now, verify_modes={"1900000202": "sometimes"})


def test_missing_or_broken_files_are_credentials_errors(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as info:
        load_merchant(tmp_path)
    assert info.value.reason == "bad_file"
    (tmp_path / "merchant.json").write_text('{"mchid": "1", "appid": "a"}')
    with pytest.raises(CredentialsError) as info:
        load_merchant(tmp_path)
    assert info.value.reason == "missing_file"
    (tmp_path / "apiclient_cert.pem").write_text("not a certificate")
    with pytest.raises(CredentialsError) as info:
        load_merchant(tmp_path)
    assert info.value.reason == "bad_certificate"
