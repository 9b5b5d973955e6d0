"""WeChat Pay key material on disk: what the switch loads, and what the simulator generates.

Layout under ``keys/wechatpay/`` (``ChannelConfig.keys_dir`` is the merchant directory)::

    <mchid>/                      what the switch needs for that merchant
        merchant.json             {"mchid", "appid"}
        apiclient_key.pem         merchant API private key (signs requests)
        apiclient_cert.pem        merchant API certificate (its serial goes into Authorization)
        apiv3_key                 the 32-character APIv3 key (decrypts resources)
        platform_ca.pem           the CA that issues platform certificates (chain check)
        platform_certs/<SERIAL>.pem   platform certificates known at provisioning time
        pub_key.pem, pub_key_id   the WeChat Pay public key and its PUB_KEY_ID_... name
    _provider/                    what only the simulator reads
        ca_key.pem, ca_cert.pem
        platform/<SERIAL>.key.pem, platform/<SERIAL>.cert.pem
        platform/schedule.json    per serial: published_at, signs_from, signs_until
        merchants/<mchid>/pub_key.key.pem   private half of the merchant's WeChat Pay public key
        merchants.json            per merchant: appid, verify_mode

``verify_mode`` is how the simulator signs for a merchant: ``certificate`` (platform certificates
only), ``mixed`` (a merchant migrating to the public key: both, at random) or ``public_key``.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from channels.wechatpay.aead import check_apiv3_key
from channels.wechatpay.certificates import (
    PUBLIC_KEY_PREFIX,
    PlatformCert,
    PlatformKeys,
    load_certificate,
    serial_hex,
)
from channels.wechatpay.errors import CredentialsError, WeChatPayError
from channels.wechatpay.keygen import (
    cert_pem,
    issue_certificate,
    key_pem,
    load_private_key,
    load_public_key,
    make_ca,
    new_rsa_key,
    public_key_pem,
)

__all__ = [
    "PROVIDER_DIR",
    "VERIFY_MODES",
    "MerchantCredentials",
    "generate",
    "issue_platform_cert",
    "load_merchant",
    "load_platform_keys",
    "merchant_dir",
    "new_apiv3_key",
    "provider_dir",
    "read_json",
    "write_json",
]

PROVIDER_DIR = "_provider"
_IDS = ("mchid", "appid")
VERIFY_MODES = ("certificate", "mixed", "public_key")
PLATFORM_CERT_DAYS = 5 * 365
MERCHANT_CERT_DAYS = 5 * 365


def provider_dir(root: Path) -> Path:
    return root / PROVIDER_DIR


def merchant_dir(root: Path, mchid: str) -> Path:
    return root / mchid


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsError("bad_file", f"cannot read {path.name}: {exc}") from exc


def write_json(path: Path, value: object) -> None:
    """Atomic replace, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", "utf-8")
    tmp.replace(path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError("missing_file", f"cannot read {path}: {exc.strerror}") from exc


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise CredentialsError("bad_certificate", f"{path.name} is not a PEM certificate") from exc


def _write_secret(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


@dataclass(frozen=True, slots=True)
class MerchantCredentials:
    """Everything the switch holds for one merchant account."""

    mchid: str
    appid: str
    merchant_serial: str
    private_key: RSAPrivateKey = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    platform: PlatformKeys = field(default_factory=PlatformKeys)


def load_platform_keys(keys_dir: Path) -> PlatformKeys:
    certs: dict[str, PlatformCert] = {}
    cert_dir = keys_dir / "platform_certs"
    if cert_dir.is_dir():
        for path in sorted(cert_dir.glob("*.pem")):
            try:
                cert = load_certificate(_read(path))
            except WeChatPayError as exc:
                raise CredentialsError("bad_certificate", f"{path.name}: {exc.message}") from exc
            certs[cert.serial] = cert
    ca_path = keys_dir / "platform_ca.pem"
    ca = _load_cert(ca_path) if ca_path.exists() else None
    key_path, id_path = keys_dir / "pub_key.pem", keys_dir / "pub_key_id"
    if key_path.exists() and id_path.exists():
        key_id = _read(id_path).decode("ascii").strip()
        if not key_id.startswith(PUBLIC_KEY_PREFIX):
            raise CredentialsError("bad_key", f"public key id {key_id[:40]!r}")
        public_key = load_public_key(_read(key_path), "pub_key.pem")
        return PlatformKeys(certs, key_id, public_key, ca)
    return PlatformKeys(certs, None, None, ca)


def load_merchant(keys_dir: Path) -> MerchantCredentials:
    ids = read_json(keys_dir / "merchant.json")
    if not isinstance(ids, dict) or not all(
        isinstance(ids.get(k), str) for k in ("mchid", "appid")
    ):
        raise CredentialsError("bad_file", "merchant.json needs mchid and appid")
    cert = _load_cert(keys_dir / "apiclient_cert.pem")
    try:
        apiv3_key = check_apiv3_key(_read(keys_dir / "apiv3_key").strip())
    except WeChatPayError as exc:
        raise CredentialsError("bad_key", exc.message) from exc
    return MerchantCredentials(
        mchid=ids["mchid"],
        appid=ids["appid"],
        merchant_serial=serial_hex(cert),
        private_key=load_private_key(_read(keys_dir / "apiclient_key.pem"), "apiclient_key.pem"),
        apiv3_key=apiv3_key,
        platform=load_platform_keys(keys_dir),
    )


def new_apiv3_key() -> bytes:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(32)).encode("ascii")


def new_public_key_id(mchid: str) -> str:
    digits = "".join(secrets.choice(string.digits) for _ in range(16))
    return f"{PUBLIC_KEY_PREFIX}01{mchid}{digits}"


def _ensure_ca(pdir: Path, now: datetime) -> tuple[RSAPrivateKey, x509.Certificate]:
    key_path, cert_path = pdir / "ca_key.pem", pdir / "ca_cert.pem"
    if key_path.exists() and cert_path.exists():
        key = load_private_key(_read(key_path), "ca_key.pem")
        return key, _load_cert(cert_path)
    key, cert = make_ca("Tenpay.com Root CA (simulated)", now, days=20 * 365)
    _write_secret(key_path, key_pem(key))
    cert_path.write_bytes(cert_pem(cert))
    return key, cert


def issue_platform_cert(root: Path, now: float, *, signs_from: float | None = None) -> str:
    """A new platform key and certificate, published at ``now``; it signs from ``signs_from``
    (default: at once). Returns its serial. Used at first start and by rotation."""
    pdir = provider_dir(root)
    moment = datetime.fromtimestamp(now, UTC)
    ca_key, ca_cert = _ensure_ca(pdir, moment)
    key = new_rsa_key()
    cert = issue_certificate(
        ca_key,
        ca_cert,
        key.public_key(),
        common_name="Tenpay.com Platform Certificate",
        org="Tenpay.com",
        not_before=moment - timedelta(days=1),
        not_after=moment + timedelta(days=PLATFORM_CERT_DAYS),
    )
    serial = serial_hex(cert)
    platform = pdir / "platform"
    platform.mkdir(parents=True, exist_ok=True)
    _write_secret(platform / f"{serial}.key.pem", key_pem(key))
    (platform / f"{serial}.cert.pem").write_bytes(cert_pem(cert))
    schedule_path = platform / "schedule.json"
    schedule = read_json(schedule_path) if schedule_path.exists() else {}
    start = now if signs_from is None else signs_from
    schedule[serial] = {"published_at": now, "signs_from": start, "signs_until": None}
    write_json(schedule_path, schedule)
    return serial


def _provision_merchant(
    root: Path, mchid: str, appid: str, ca: tuple[RSAPrivateKey, x509.Certificate], now: datetime
) -> None:
    mdir = merchant_dir(root, mchid)
    mdir.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = ca
    key = new_rsa_key()
    cert = issue_certificate(
        ca_key,
        ca_cert,
        key.public_key(),
        common_name=mchid,
        org="WeChat Pay merchant",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=MERCHANT_CERT_DAYS),
    )
    _write_secret(mdir / "apiclient_key.pem", key_pem(key))
    (mdir / "apiclient_cert.pem").write_bytes(cert_pem(cert))
    _write_secret(mdir / "apiv3_key", new_apiv3_key())
    (mdir / "platform_ca.pem").write_bytes(cert_pem(ca_cert))
    certs = mdir / "platform_certs"
    certs.mkdir(exist_ok=True)
    for path in (provider_dir(root) / "platform").glob("*.cert.pem"):
        (certs / f"{path.name.removesuffix('.cert.pem')}.pem").write_bytes(path.read_bytes())
    pub_dir = provider_dir(root) / "merchants" / mchid
    pub_dir.mkdir(parents=True, exist_ok=True)
    pub_key = new_rsa_key()
    _write_secret(pub_dir / "pub_key.key.pem", key_pem(pub_key))
    (mdir / "pub_key.pem").write_bytes(public_key_pem(pub_key.public_key()))
    (mdir / "pub_key_id").write_text(new_public_key_id(mchid) + "\n", "ascii")
    # merchant.json last: its presence marks a complete merchant directory
    write_json(mdir / "merchant.json", {"mchid": mchid, "appid": appid})


def generate(
    root: Path,
    merchants: Sequence[tuple[str, str]],
    *,
    now: float,
    verify_modes: Mapping[str, str] | None = None,
) -> list[str]:
    """Idempotent first-start provisioning: the provider's CA and first platform certificate,
    and each missing merchant's directory. Existing keys are kept. Returns the merchant ids
    that were created. ``verify_modes`` (mchid → mode) defaults to ``certificate``."""
    pdir = provider_dir(root)
    pdir.mkdir(parents=True, exist_ok=True)
    moment = datetime.fromtimestamp(now, UTC)
    ca = _ensure_ca(pdir, moment)
    if not any((pdir / "platform").glob("*.cert.pem")):
        issue_platform_cert(root, now)
    registry_path = pdir / "merchants.json"
    registry: dict[str, Any] = read_json(registry_path) if registry_path.exists() else {}
    created: list[str] = []
    for mchid, appid in merchants:
        mode = (verify_modes or {}).get(mchid, "certificate")
        if mode not in VERIFY_MODES:
            raise CredentialsError("bad_mode", f"verify mode {mode!r}")
        if not (merchant_dir(root, mchid) / "merchant.json").exists():
            _provision_merchant(root, mchid, appid, ca, moment)
            created.append(mchid)
        entry = registry.setdefault(mchid, {"appid": appid, "verify_mode": mode})
        if verify_modes is not None and mchid in verify_modes:
            entry["verify_mode"] = mode
    write_json(registry_path, registry)
    return created
