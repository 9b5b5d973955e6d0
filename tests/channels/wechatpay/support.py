"""Key material and message builders shared by the WeChat Pay tests.

One generated key tree per session (RSA keys are slow to make): two merchants, so a test can
sign or encrypt with *another* merchant's material, and the provider's private keys, so a test
can play WeChat. Callbacks are built with the simulator's own notification code.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from channels.model import CallbackKind
from channels.sim.wechatpay_keys import ProviderKeys
from channels.sim.wechatpay_notify import (
    PlatformSigner,
    notification_body,
    random_nonce,
    refund_resource,
    signed_headers,
    transaction_resource,
)
from channels.wechatpay import (
    CallbackPolicy,
    MerchantCredentials,
    PlatformKeys,
    generate,
    load_merchant,
    merchant_dir,
)

MCHID = "1900000109"
APPID = "wxd678efh567hg6787"
OTHER_MCHID = "1900000110"
OTHER_APPID = "wxd678efh567h06788"


@dataclass(slots=True)
class WxWorld:
    root: Path
    merchant: MerchantCredentials
    other: MerchantCredentials
    provider: ProviderKeys
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def keys(self) -> PlatformKeys:
        return self.merchant.platform

    @property
    def signer(self) -> PlatformSigner:
        """The platform certificate that signs now."""
        return self.provider.signing_certs(time.time())[0].signer

    @property
    def pub_signer(self) -> PlatformSigner:
        signer = self.provider.merchants[MCHID].public_key
        assert signer is not None
        return signer

    @property
    def merchant_dir(self) -> Path:
        return merchant_dir(self.root, MCHID)

    def policy(self, **overrides: Any) -> CallbackPolicy:
        values: dict[str, Any] = {
            "channel": "wechatpay-test",
            "mchid": MCHID,
            "appid": APPID,
            "apiv3_key": self.merchant.apiv3_key,
        }
        values.update(overrides)
        accept = values.pop("accept", None)
        if accept is not None:
            return CallbackPolicy(**values, accept=frozenset(accept))
        return CallbackPolicy(**values)

    def payment(self, out_trade_no: str = "FS20261120000001", **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "mchid": MCHID,
            "appid": APPID,
            "out_trade_no": out_trade_no,
            "transaction_id": "4200002026112000000001",
            "trade_state": "SUCCESS",
            "total_fen": 20000,
            "payer_total_fen": 20000,
            "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
            "success_time": time.time(),
        }
        values.update(overrides)
        return transaction_resource(**values)

    def refund(
        self, out_refund_no: str = "FS20261120000001-R1", **overrides: Any
    ) -> dict[str, Any]:
        values: dict[str, Any] = {
            "mchid": MCHID,
            "out_trade_no": "FS20261120000001",
            "transaction_id": "4200002026112000000001",
            "out_refund_no": out_refund_no,
            "refund_id": "50300002026112000000001",
            "refund_status": "SUCCESS",
            "refund_fen": 5000,
            "total_fen": 20000,
            "success_time": time.time(),
        }
        values.update(overrides)
        return refund_resource(**values)

    def body(
        self,
        event_type: str,
        resource: dict[str, Any],
        *,
        apiv3_key: bytes | None = None,
        event_id: str = "EV-2026112000000001",
        **envelope: Any,
    ) -> bytes:
        return notification_body(
            event_type,
            resource,
            apiv3_key=self.merchant.apiv3_key if apiv3_key is None else apiv3_key,
            event_id=event_id,
            create_time=time.time(),
            nonce=random_nonce(self.rng),
            **envelope,
        )

    def headers(
        self, body: bytes, *, signer: PlatformSigner | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        """Signed headers, names lower-cased as the verifier receives them."""
        signed = signed_headers(
            body,
            signer or self.signer,
            timestamp=int(time.time()) if timestamp is None else timestamp,
            nonce=random_nonce(self.rng, 32),
        )
        return {name.lower(): value for name, value in signed.items()}

    def callback(
        self, event_type: str = "TRANSACTION.SUCCESS", resource: dict[str, Any] | None = None
    ) -> tuple[dict[str, str], bytes]:
        if resource is None:
            kind = CallbackKind.REFUND if event_type.startswith("REFUND") else CallbackKind.PAYMENT
            resource = self.refund() if kind is CallbackKind.REFUND else self.payment()
        body = self.body(event_type, resource)
        return self.headers(body), body


def make_world(root: Path) -> WxWorld:
    """Generate a key tree of two merchants under ``root`` (keys/wechatpay) and load it."""
    generate(root, [(MCHID, APPID), (OTHER_MCHID, OTHER_APPID)], now=time.time())
    return world_of(root)


def world_of(root: Path) -> WxWorld:
    """An existing key tree with both merchants, e.g. the simulator process's (its first two
    merchants have these ids)."""
    return WxWorld(
        root=root,
        merchant=load_merchant(merchant_dir(root, MCHID)),
        other=load_merchant(merchant_dir(root, OTHER_MCHID)),
        provider=ProviderKeys(root),
    )
