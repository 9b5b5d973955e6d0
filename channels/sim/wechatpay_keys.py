"""The simulated WeChat Pay's keys: platform certificates on a rotation schedule, the WeChat
Pay public keys of merchants that use them, and what it knows of each merchant.

Rotation follows the real sequence: a new platform certificate is *published* in
``/v3/certificates`` first, starts signing ``ROTATION_LEAD_S`` later (so a switch that refreshes
on its schedule knows it before it sees it), and for ``OVERLAP_S`` after that old and new sign
at random; then the old one retires. A merchant's ``verify_mode`` says whether answers and
callbacks are signed with platform certificates, its WeChat Pay public key, or both at random
(a merchant migrating to the public key).

Times here are simulated (``SimClock``), so a test can walk through a rotation by advancing
the clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from channels.sim.wechatpay_notify import PlatformSigner
from channels.wechatpay import (
    PlatformCert,
    SignatureError,
    check_apiv3_key,
    issue_platform_cert,
    load_certificate,
    merchant_dir,
    provider_dir,
)
from channels.wechatpay.credentials import read_json, write_json
from channels.wechatpay.keygen import load_private_key

__all__ = ["OVERLAP_S", "ROTATION_LEAD_S", "MerchantKeys", "PlatformEntry", "ProviderKeys"]

ROTATION_LEAD_S = 24 * 3600.0
OVERLAP_S = 5 * 86400.0


@dataclass(slots=True)
class PlatformEntry:
    signer: PlatformSigner
    cert: PlatformCert
    published_at: float
    signs_from: float
    signs_until: float | None = None

    def signs_at(self, now: float) -> bool:
        until = self.signs_until
        return self.signs_from <= now and (until is None or now < until) and self.cert.valid_at(now)

    def listed_at(self, now: float) -> bool:
        until = self.signs_until
        return self.published_at <= now and (until is None or now < until)


@dataclass(slots=True)
class MerchantKeys:
    mchid: str
    appid: str
    verify_mode: str
    merchant_serial: str
    merchant_key: RSAPublicKey = field(repr=False)  # verifies the merchant's requests
    apiv3_key: bytes = field(repr=False)
    public_key: PlatformSigner | None = None  # the merchant's WeChat Pay public key, private half


class ProviderKeys:
    """Loaded from ``keys/wechatpay/`` as ``credentials.generate`` laid it out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.platform: dict[str, PlatformEntry] = {}
        self.merchants: dict[str, MerchantKeys] = {}
        self.reload()

    def reload(self) -> None:
        pdir = provider_dir(self.root)
        schedule: dict[str, Any] = read_json(pdir / "platform" / "schedule.json")
        self.platform = {}
        for serial, times in schedule.items():
            base = pdir / "platform" / serial
            key = load_private_key(base.with_suffix(".key.pem").read_bytes(), f"{serial}.key")
            cert = load_certificate(base.with_suffix(".cert.pem").read_bytes())
            self.platform[serial] = PlatformEntry(
                PlatformSigner(serial, key),
                cert,
                float(times["published_at"]),
                float(times["signs_from"]),
                None if times.get("signs_until") is None else float(times["signs_until"]),
            )
        registry: dict[str, Any] = read_json(pdir / "merchants.json")
        self.merchants = {mchid: self._merchant(mchid, e) for mchid, e in registry.items()}

    def _merchant(self, mchid: str, entry: dict[str, Any]) -> MerchantKeys:
        mdir = merchant_dir(self.root, mchid)
        cert = load_certificate((mdir / "apiclient_cert.pem").read_bytes())
        pub_path = provider_dir(self.root) / "merchants" / mchid / "pub_key.key.pem"
        pub_id = (mdir / "pub_key_id").read_text("ascii").strip()
        signer = PlatformSigner(pub_id, load_private_key(pub_path.read_bytes(), "pub_key"))
        return MerchantKeys(
            mchid=mchid,
            appid=str(entry["appid"]),
            verify_mode=str(entry.get("verify_mode", "certificate")),
            merchant_serial=cert.serial,
            merchant_key=cert.public_key(),
            apiv3_key=check_apiv3_key((mdir / "apiv3_key").read_bytes().strip()),
            public_key=signer,
        )

    def signing_certs(self, now: float) -> list[PlatformEntry]:
        return [e for e in self.platform.values() if e.signs_at(now)]

    def listed(self, now: float) -> list[PlatformCert]:
        """What ``/v3/certificates`` answers at ``now``."""
        return [e.cert for e in self.platform.values() if e.listed_at(now)]

    def signer_for(self, mchid: str, now: float, rng: random.Random) -> PlatformSigner:
        """The key an answer or callback for ``mchid`` is signed with at ``now``: during an
        overlap or a migration, a random one of those allowed."""
        merchant = self.merchants[mchid]
        certs = [e.signer for e in self.signing_certs(now)]
        if merchant.verify_mode == "public_key" and merchant.public_key is not None:
            return merchant.public_key
        if merchant.verify_mode == "mixed" and merchant.public_key is not None:
            certs.append(merchant.public_key)
        if not certs:
            raise SignatureError("no_key", "no platform certificate signs now")
        return rng.choice(certs)

    def rotate(self, now: float) -> dict[str, Any]:
        """Publish a new platform certificate now; it signs from ``now + ROTATION_LEAD_S``, and
        the current ones retire ``OVERLAP_S`` after that."""
        signs_from = now + ROTATION_LEAD_S
        retiring = [s for s, e in self.platform.items() if e.signs_until is None]
        serial = issue_platform_cert(self.root, now, signs_from=signs_from)
        schedule_path = provider_dir(self.root) / "platform" / "schedule.json"
        schedule: dict[str, Any] = read_json(schedule_path)
        for old in retiring:
            schedule[old]["signs_until"] = signs_from + OVERLAP_S
        write_json(schedule_path, schedule)
        self.reload()
        return {
            "serial": serial,
            "published_at": now,
            "signs_from": signs_from,
            "retiring": retiring,
            "retire_at": signs_from + OVERLAP_S,
        }
