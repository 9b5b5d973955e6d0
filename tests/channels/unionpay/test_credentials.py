"""The key layout on disk: generated once, loaded by the switch and the simulator, rotated."""

from __future__ import annotations

import stat
from datetime import datetime
from pathlib import Path

import pytest

from channels.unionpay import (
    AcpError,
    MerchantCredentials,
    ProviderCredentials,
    SignCertVerifier,
    generate,
    provider_root,
    rotate_signing,
    sign_rsa,
)
from tests.channels.unionpay.support import MER_ID


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory, now_dt: datetime) -> Path:
    root = tmp_path_factory.mktemp("keys")
    generate(root, [MER_ID], now_dt)
    return root


def test_the_merchant_directory_loads(keys_root: Path, now_dt: datetime) -> None:
    creds = MerchantCredentials.load(provider_root(keys_root) / MER_ID)
    assert creds.mer_id == MER_ID
    assert creds.cert_id == str(creds.certificate.serial_number)
    assert creds.secure_key is None
    provider = ProviderCredentials.load(keys_root)
    # the switch's anchors accept UnionPay's signing certificate ...
    SignCertVerifier(creds.anchors).verify_pem(
        provider.signing.cert_pem().decode(), now_dt.timestamp()
    )
    # ... and UnionPay knows the merchant's certificate
    registered = provider.merchant_certs[MER_ID]
    assert registered.serial_number == creds.certificate.serial_number
    key_file = provider_root(keys_root) / MER_ID / "merchant_key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_generate_is_idempotent_and_adds_merchants(keys_root: Path, now_dt: datetime) -> None:
    before = MerchantCredentials.load(provider_root(keys_root) / MER_ID).cert_id
    generate(keys_root, [MER_ID, "777290058110049"], now_dt)
    assert MerchantCredentials.load(provider_root(keys_root) / MER_ID).cert_id == before
    second = MerchantCredentials.load(provider_root(keys_root) / "777290058110049")
    assert second.cert_id != before
    assert set(ProviderCredentials.load(keys_root).merchant_certs) == {MER_ID, "777290058110049"}


def test_rotation_keeps_the_chain(keys_root: Path, now_dt: datetime) -> None:
    old = ProviderCredentials.load(keys_root).signing
    new = rotate_signing(keys_root, now_dt)
    assert new.cert_id != old.cert_id
    assert ProviderCredentials.load(keys_root).signing.cert_id == new.cert_id
    creds = MerchantCredentials.load(provider_root(keys_root) / MER_ID)
    SignCertVerifier(creds.anchors).verify_pem(new.cert_pem().decode(), now_dt.timestamp())
    retired = provider_root(keys_root) / "_provider" / "retired" / f"sign_cert_{old.cert_id}.pem"
    assert retired.exists()


def test_missing_and_mismatched_files(keys_root: Path, tmp_path: Path) -> None:
    with pytest.raises(AcpError) as info:
        MerchantCredentials.load(tmp_path / MER_ID)
    assert info.value.reason == "missing_key_file"
    mixed = tmp_path / MER_ID
    mixed.mkdir()
    source = provider_root(keys_root)
    for name in ("merchant_cert.pem", "acp_root.pem", "acp_middle.pem"):
        (mixed / name).write_bytes((source / MER_ID / name).read_bytes())
    (mixed / "merchant_key.pem").write_bytes(
        (source / "777290058110049" / "merchant_key.pem").read_bytes()
    )
    with pytest.raises(AcpError) as info:
        MerchantCredentials.load(mixed)
    assert info.value.reason == "bad_key"


def test_a_secure_key_is_read_when_present(keys_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / MER_ID
    copy.mkdir()
    for path in (provider_root(keys_root) / MER_ID).iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "secure_key").write_text("s3cret\n")
    creds = MerchantCredentials.load(copy)
    assert creds.secure_key == "s3cret"
    assert sign_rsa({"a": "1"}, creds.private_key)
