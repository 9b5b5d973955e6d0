"""Helpers for the UnionPay tests: messages signed *by hand* from cryptography primitives.

The hand signer repeats the 5.1.0 recipe step by step (sorted ``k=v&``, hex SHA-256, sign the
hex text) without the module under test, so a test that verifies what it signs checks the
implementation against the recipe rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.unionpay import IssuedCert

MER_ID = "777290058110048"


def hand_sign(
    fields: Mapping[str, str], key: rsa.RSAPrivateKey, *, algorithm: str = "sha256"
) -> str:
    text = "&".join(f"{name}={fields[name]}" for name in sorted(fields) if name != "signature")
    hash_alg: hashes.HashAlgorithm
    if algorithm == "sha1":
        hexed, hash_alg = hashlib.sha1(text.encode()).hexdigest(), hashes.SHA1()
    else:
        hexed, hash_alg = hashlib.sha256(text.encode()).hexdigest(), hashes.SHA256()
    raw = key.sign(hexed.encode("ascii"), padding.PKCS1v15(), hash_alg)
    return base64.b64encode(raw).decode("ascii")


def notify_fields(**overrides: str) -> dict[str, str]:
    """A pre-authorization success notify's fields (unsigned, without the certificate)."""
    fields = {
        "version": "5.1.0",
        "encoding": "UTF-8",
        "signMethod": "01",
        "txnType": "02",
        "txnSubType": "01",
        "bizType": "000201",
        "accessType": "0",
        "merId": MER_ID,
        "orderId": "FS20261120000001",
        "txnTime": "20261120101500",
        "txnAmt": "20000",
        "currencyCode": "156",
        "queryId": "782611201015000000011",
        "traceNo": "000001",
        "traceTime": "1120101500",
        "settleAmt": "20000",
        "settleCurrencyCode": "156",
        "settleDate": "1120",
        "respCode": "00",
        "respMsg": "成功[0000000]",
        "accNo": "6216****0001",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v != "<drop>"}


def signed_by(
    fields: Mapping[str, str], signer: IssuedCert, *, algorithm: str = "sha256"
) -> dict[str, str]:
    """``fields`` with ``signPubKeyCert`` = signer's certificate and a hand-made signature."""
    out = dict(fields)
    out["signPubKeyCert"] = signer.cert_pem().decode("ascii")
    out["signature"] = hand_sign(out, signer.key, algorithm=algorithm)
    return out
