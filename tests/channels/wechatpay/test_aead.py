"""AEAD_AES_256_GCM resources: sealed and opened with the APIv3 key, and nothing else."""

from __future__ import annotations

import base64

import pytest

from channels.wechatpay import DecryptError, EncryptedResource, check_apiv3_key, decrypt, encrypt

KEY = b"0123456789abcdefghijABCDEFGHIJ01"
OTHER = b"ZYXWVUTSRQPONMLKJIHGFEDCBA987654"


def test_round_trip_and_tag_at_the_end() -> None:
    sealed = encrypt(KEY, b'{"trade_state":"SUCCESS"}', "transaction", "abcdefghijkl")
    raw = base64.b64decode(sealed)
    assert len(raw) == len(b'{"trade_state":"SUCCESS"}') + 16
    assert decrypt(KEY, "abcdefghijkl", "transaction", sealed) == b'{"trade_state":"SUCCESS"}'


def _flip(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("key", "nonce", "aad", "tamper"),
    [
        (KEY, "abcdefghijkl", "transaction", lambda c: _flip(c, 0)),  # ciphertext
        (KEY, "abcdefghijkl", "transaction", lambda c: _flip(c, -1)),  # tag
        (KEY, "abcdefghijkl", "refund", lambda c: c),  # associated data
        (KEY, "abcdefghijkm", "transaction", lambda c: c),  # nonce
        (OTHER, "abcdefghijkl", "transaction", lambda c: c),  # another APIv3 key
        (KEY, "abcdefghijkl", "transaction", lambda c: c[:-4]),  # truncated base64
        (KEY, "abcdefghijkl", "transaction", lambda c: "!" + c[1:]),  # not base64
        (KEY, "abcdefghijkl", "transaction", lambda c: base64.b64encode(b"short").decode()),
        (KEY, "", "transaction", lambda c: c),  # no nonce
        (KEY, "非ascii的nonce", "transaction", lambda c: c),
    ],
)
def test_every_wrong_input_is_decrypt_failed(
    key: bytes, nonce: str, aad: str, tamper: object
) -> None:
    sealed = encrypt(KEY, b"{}", "transaction", "abcdefghijkl")
    assert callable(tamper)
    with pytest.raises(DecryptError) as info:
        decrypt(key, nonce, aad, tamper(sealed))
    assert info.value.reason == "decrypt_failed"


@pytest.mark.parametrize(
    "key", [b"short", KEY + b"x", b"0123456789abcdefghijABCDEFGHIJ0!", "密".encode() * 11]
)
def test_apiv3_key_is_32_ascii_alphanumerics(key: bytes) -> None:
    with pytest.raises(DecryptError):
        check_apiv3_key(key)


def test_resource_json_round_trip() -> None:
    sealed = EncryptedResource.seal(
        KEY, b"x", associated_data="transaction", nonce="n" * 12, original_type="transaction"
    )
    document = sealed.to_json()
    assert document["algorithm"] == "AEAD_AES_256_GCM"
    assert document["original_type"] == "transaction"
    assert EncryptedResource.from_json(document).open(KEY) == b"x"


def test_resource_with_another_algorithm_is_refused() -> None:
    sealed = EncryptedResource.seal(KEY, b"x", associated_data="", nonce="n" * 12)
    document = {**sealed.to_json(), "algorithm": "AEAD_SM4_GCM"}
    with pytest.raises(DecryptError) as info:
        EncryptedResource.from_json(document).open(KEY)
    assert info.value.reason == "bad_algorithm"
