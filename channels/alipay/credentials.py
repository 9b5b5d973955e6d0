"""Alipay key material on disk: what the switch loads and what the simulator generates.

Alipay's "public key mode" has two RSA pairs. The merchant's *app* key signs requests; its
public half is uploaded to Alipay once. *Alipay's* key signs responses and notifies; the
merchant downloads its public half. So a merchant directory holds the app private key and
Alipay's public key, and the provider directory holds Alipay's private key and the app public
keys merchants "uploaded" — the simulator's view of the open platform console.

Layout under ``keys_root`` (``$FUELSWITCH_HOME/keys``)::

    alipay/<seller_id>/app.json              {"app_id": .., "seller_id": ..}
    alipay/<seller_id>/app_private_key.pem   PKCS#8, mode 0600
    alipay/<seller_id>/app_public_key.pem    what the merchant uploads
    alipay/<seller_id>/alipay_public_key.pem Alipay's key, to verify responses and notifies
    alipay/_provider/alipay_private_key.pem  the simulator's signing key, mode 0600
    alipay/_provider/alipay_public_key.pem
    alipay/_provider/apps/<app_id>.json      {"app_id", "seller_id", "app_public_key": PEM}

``seller_id`` is the merchant's PID (``2088...``), the ``merchant_id`` of the channel config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.alipay.errors import CredentialsError

__all__ = [
    "AlipayCredentials",
    "ProviderKeys",
    "RegisteredApp",
    "generate",
    "load_credentials",
    "load_provider",
    "merchant_dir",
    "provider_dir",
    "rotate_alipay_key",
]

PROVIDER_DIRNAME = "_provider"
_KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class AlipayCredentials:
    """Everything the switch needs for one Alipay app: its ids and both keys it uses."""

    app_id: str
    seller_id: str
    app_private_key: rsa.RSAPrivateKey
    alipay_public_key: rsa.RSAPublicKey

    def __repr__(self) -> str:  # never print key material
        return f"AlipayCredentials(app_id={self.app_id!r}, seller_id={self.seller_id!r})"


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """An app as the open platform knows it: the public key its merchant uploaded."""

    app_id: str
    seller_id: str
    app_public_key: rsa.RSAPublicKey


@dataclass(frozen=True, slots=True)
class ProviderKeys:
    """The simulator's side: Alipay's own pair and every registered app."""

    alipay_private_key: rsa.RSAPrivateKey
    alipay_public_key: rsa.RSAPublicKey
    apps: Mapping[str, RegisteredApp]

    def __repr__(self) -> str:
        return f"ProviderKeys(apps={sorted(self.apps)!r})"


def provider_dir(keys_root: Path) -> Path:
    return keys_root / "alipay" / PROVIDER_DIRNAME


def merchant_dir(keys_root: Path, seller_id: str) -> Path:
    return keys_root / "alipay" / seller_id


def load_credentials(keys_dir: Path) -> AlipayCredentials:
    """Load a merchant directory (``ChannelConfig.keys_dir``)."""
    info = _read_json(keys_dir / "app.json")
    app_id = _text_field(info, "app_id", keys_dir / "app.json")
    seller_id = _text_field(info, "seller_id", keys_dir / "app.json")
    return AlipayCredentials(
        app_id=app_id,
        seller_id=seller_id,
        app_private_key=_load_private(keys_dir / "app_private_key.pem"),
        alipay_public_key=_load_public(keys_dir / "alipay_public_key.pem"),
    )


def load_provider(keys_root: Path) -> ProviderKeys:
    """Load the simulator's material: Alipay's key pair and the registered apps."""
    pdir = provider_dir(keys_root)
    apps: dict[str, RegisteredApp] = {}
    apps_dir = pdir / "apps"
    if apps_dir.is_dir():
        for path in sorted(apps_dir.glob("*.json")):
            info = _read_json(path)
            pem = _text_field(info, "app_public_key", path)
            apps[_text_field(info, "app_id", path)] = RegisteredApp(
                app_id=_text_field(info, "app_id", path),
                seller_id=_text_field(info, "seller_id", path),
                app_public_key=_public_from_pem(pem.encode(), path),
            )
    return ProviderKeys(
        alipay_private_key=_load_private(pdir / "alipay_private_key.pem"),
        alipay_public_key=_load_public(pdir / "alipay_public_key.pem"),
        apps=apps,
    )


def generate(keys_root: Path, seller_id: str, app_id: str) -> Path:
    """Create what is missing for one merchant (and Alipay's own pair on first use); keeps
    every existing key, so restarting the simulator never invalidates a configured switch.
    Returns the merchant directory."""
    if not seller_id or "/" in seller_id or seller_id == PROVIDER_DIRNAME:
        raise CredentialsError("bad_merchant_id", f"unusable seller_id {seller_id!r}")
    pdir = provider_dir(keys_root)
    alipay_private = pdir / "alipay_private_key.pem"
    if not alipay_private.exists():
        key = _new_key()
        _write(alipay_private, _private_pem(key), secret=True)
        _write(pdir / "alipay_public_key.pem", _public_pem(key.public_key()))
    mdir = merchant_dir(keys_root, seller_id)
    app_private = mdir / "app_private_key.pem"
    if not app_private.exists():
        key = _new_key()
        _write(app_private, _private_pem(key), secret=True)
        _write(mdir / "app_public_key.pem", _public_pem(key.public_key()))
    if not (mdir / "app.json").exists():
        _write(mdir / "app.json", orjson.dumps({"app_id": app_id, "seller_id": seller_id}))
    if not (mdir / "alipay_public_key.pem").exists():
        _write(mdir / "alipay_public_key.pem", (pdir / "alipay_public_key.pem").read_bytes())
    registration = pdir / "apps" / f"{app_id}.json"
    if not registration.exists():
        app_public = (mdir / "app_public_key.pem").read_text()
        record = {"app_id": app_id, "seller_id": seller_id, "app_public_key": app_public}
        _write(registration, orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return mdir


def rotate_alipay_key(keys_root: Path) -> rsa.RSAPublicKey:
    """Replace Alipay's key pair and hand the new public key to every merchant directory, as
    an operator does after a key change in the console. Returns the new public key."""
    pdir = provider_dir(keys_root)
    key = _new_key()
    public_pem = _public_pem(key.public_key())
    _write(pdir / "alipay_private_key.pem", _private_pem(key), secret=True)
    _write(pdir / "alipay_public_key.pem", public_pem)
    for mdir in sorted((keys_root / "alipay").iterdir()):
        if mdir.is_dir() and mdir.name != PROVIDER_DIRNAME and (mdir / "app.json").exists():
            _write(mdir / "alipay_public_key.pem", public_pem)
    return key.public_key()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)


def _private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write(path: Path, data: bytes, *, secret: bool = False) -> None:
    """Write through a temporary file and rename, so a reader never sees half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialsError("missing_key_file", f"{path}: {exc.strerror}") from exc


def _read_json(path: Path) -> Mapping[str, object]:
    try:
        data = orjson.loads(_read_bytes(path))
    except orjson.JSONDecodeError as exc:
        raise CredentialsError("bad_key_file", f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CredentialsError("bad_key_file", f"{path} is not a JSON object")
    return data


def _text_field(info: Mapping[str, object], name: str, path: Path) -> str:
    value = info.get(name)
    if not isinstance(value, str) or not value:
        raise CredentialsError("bad_key_file", f"{path} has no {name}")
    return value


def _load_private(path: Path) -> rsa.RSAPrivateKey:
    """Our own key (see ``channels.wechatpay.keygen.load_private_key`` on skipping
    OpenSSL's 45 ms consistency check of a trusted key)."""
    try:
        key = serialization.load_pem_private_key(
            _read_bytes(path), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise CredentialsError("bad_key_file", f"{path} is not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialsError("bad_key_file", f"{path} is not an RSA key")
    return key


def _load_public(path: Path) -> rsa.RSAPublicKey:
    return _public_from_pem(_read_bytes(path), path)


def _public_from_pem(pem: bytes, path: Path) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise CredentialsError("bad_key_file", f"{path} is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise CredentialsError("bad_key_file", f"{path} is not an RSA key")
    return key
