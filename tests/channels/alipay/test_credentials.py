"""The keys layout: generated once, loaded by the switch and the simulator, rotated."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from channels.alipay import (
    CredentialsError,
    generate,
    load_credentials,
    load_provider,
    merchant_dir,
    rotate_alipay_key,
    sign_content,
    verify_content,
)
from tests.channels.alipay.support import APP_ID, SELLER_ID


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("keys")
    generate(root, SELLER_ID, APP_ID)
    return root


def test_merchant_and_provider_halves_fit_together(keys_root: Path) -> None:
    creds = load_credentials(merchant_dir(keys_root, SELLER_ID))
    provider = load_provider(keys_root)
    assert (creds.app_id, creds.seller_id) == (APP_ID, SELLER_ID)
    app = provider.apps[APP_ID]
    assert app.seller_id == SELLER_ID
    request_sign = sign_content("a=1", creds.app_private_key)
    assert verify_content("a=1", request_sign, app.app_public_key)
    notify_sign = sign_content("b=2", provider.alipay_private_key)
    assert verify_content("b=2", notify_sign, creds.alipay_public_key)


def test_private_keys_are_not_world_readable_and_not_in_repr(keys_root: Path) -> None:
    path = merchant_dir(keys_root, SELLER_ID) / "app_private_key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = load_credentials(merchant_dir(keys_root, SELLER_ID))
    assert "PRIVATE" not in repr(creds)
    assert repr(creds) == f"AlipayCredentials(app_id={APP_ID!r}, seller_id={SELLER_ID!r})"


def test_generate_is_idempotent_and_adds_merchants(tmp_path: Path) -> None:
    generate(tmp_path, SELLER_ID, APP_ID)
    before = (merchant_dir(tmp_path, SELLER_ID) / "app_private_key.pem").read_bytes()
    generate(tmp_path, SELLER_ID, APP_ID)
    generate(tmp_path, "2088123456789013", "2021000000000002")
    assert (merchant_dir(tmp_path, SELLER_ID) / "app_private_key.pem").read_bytes() == before
    assert sorted(load_provider(tmp_path).apps) == [APP_ID, "2021000000000002"]


def test_rotation_reaches_every_merchant(tmp_path: Path) -> None:
    generate(tmp_path, SELLER_ID, APP_ID)
    generate(tmp_path, "2088123456789013", "2021000000000002")
    rotate_alipay_key(tmp_path)
    new_sign = sign_content("x=1", load_provider(tmp_path).alipay_private_key)
    for seller in (SELLER_ID, "2088123456789013"):
        creds = load_credentials(merchant_dir(tmp_path, seller))
        assert verify_content("x=1", new_sign, creds.alipay_public_key)


def test_missing_or_broken_files_raise_credentials_errors(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as caught:
        load_credentials(tmp_path / "nope")
    assert caught.value.reason == "missing_key_file"
    mdir = generate(tmp_path, SELLER_ID, APP_ID)
    (mdir / "alipay_public_key.pem").write_text("garbage")
    with pytest.raises(CredentialsError) as caught:
        load_credentials(mdir)
    assert caught.value.reason == "bad_key_file"
    (mdir / "app.json").write_text("[]")
    with pytest.raises(CredentialsError):
        load_credentials(mdir)


@pytest.mark.parametrize("seller", ["", "_provider", "a/b"])
def test_unusable_merchant_ids_are_refused(tmp_path: Path, seller: str) -> None:
    with pytest.raises(CredentialsError):
        generate(tmp_path, seller, APP_ID)
