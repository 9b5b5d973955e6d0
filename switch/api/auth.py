"""Signed bearer tokens: who is calling, as a customer or as staff of some stations.

A token is ``base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))``
with a compact JSON payload ``{"sub", "role", "stations", "iat", "exp"}``. The MAC covers the
encoded payload exactly as sent, so verification never depends on how JSON is re-serialised,
and the signature is checked (in constant time) before the payload is even parsed: nothing an
attacker writes is interpreted until it is known to be ours.

The switch issues its own tokens (the mini-program's login exchanges a WeChat/Alipay code for
one), so a shared secret is enough; no key rotation or audience is needed for one issuer and one
audience.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["MIN_SECRET_BYTES", "InvalidToken", "Principal", "Role", "TokenSigner"]

MIN_SECRET_BYTES = 32  # HMAC-SHA256's block of strength; shorter secrets are guessable
MAX_TOKEN_CHARS = 4096  # a token is ~200 characters; refuse to decode megabytes


class Role(enum.StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"


class InvalidToken(Exception):
    """The token cannot be trusted (malformed, forged, expired); ``detail`` says which."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    stations: frozenset[str]  # staff only; "*" is every station
    issued_at: int
    expires_at: int

    @property
    def key(self) -> str:
        """The owner of idempotency keys: a customer and a staff member may share an id."""
        return f"{self.role.value}:{self.subject}"

    def manages(self, station_id: str) -> bool:
        return self.role is Role.STAFF and ("*" in self.stations or station_id in self.stations)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


class TokenSigner:
    """Issues and verifies tokens under one secret of at least 32 bytes."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the token secret must be at least {MIN_SECRET_BYTES} bytes, not {len(secret)}"
            )
        self._secret = secret
        self._counts = dict.fromkeys(["issued", "verified", "rejected"], 0)

    def statistics(self) -> dict[str, int]:
        return dict(self._counts)

    def _mac(self, payload_segment: str) -> bytes:
        return hmac.new(self._secret, payload_segment.encode("ascii"), hashlib.sha256).digest()

    def issue(
        self,
        subject: str,
        role: Role | str,
        *,
        stations: Iterable[str] = (),
        ttl_s: int,
        now: float,
    ) -> str:
        role = Role(role)
        listed = sorted(set(stations))
        if not subject:
            raise ValueError("a token needs a subject")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        if role is Role.STAFF and not listed:
            raise ValueError("a staff token needs at least one station (or '*')")
        if role is Role.CUSTOMER and listed:
            raise ValueError("a customer token carries no stations")
        issued = int(now)
        payload: dict[str, Any] = {"sub": subject, "role": role.value, "stations": listed}
        payload |= {"iat": issued, "exp": issued + int(ttl_s)}
        segment = _b64encode(orjson.dumps(payload))
        self._counts["issued"] += 1
        return f"{segment}.{_b64encode(self._mac(segment))}"

    def verify(self, token: str, now: float) -> Principal:
        """The principal the token names, or :class:`InvalidToken` saying what is wrong."""
        try:
            principal = self._verify(token, now)
        except InvalidToken:
            self._counts["rejected"] += 1
            raise
        self._counts["verified"] += 1
        return principal

    def _verify(self, token: str, now: float) -> Principal:
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidToken("the token is malformed")
        segment, dot, signature = token.partition(".")
        if not dot or not segment or not signature or "." in signature:
            raise InvalidToken("the token is malformed: expected payload.signature")
        try:
            given = _b64decode(signature)
            raw = _b64decode(segment)
        except (binascii.Error, ValueError):
            raise InvalidToken("the token is malformed: not base64url") from None
        if not hmac.compare_digest(given, self._mac(segment)):
            raise InvalidToken("the token signature does not match")
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidToken("the token payload is not JSON") from None
        principal = _principal(payload)
        if now >= principal.expires_at:
            expired = datetime.fromtimestamp(principal.expires_at, UTC).isoformat()
            raise InvalidToken(f"the token expired at {expired}")
        return principal


def _principal(payload: Any) -> Principal:
    """The payload's fields, type-checked: a signed payload is ours, but possibly an older or
    newer shape, and a wrong field must not become a wrong principal."""
    if not isinstance(payload, dict):
        raise InvalidToken("the token payload is not an object")
    subject, role = payload.get("sub"), payload.get("role")
    stations = payload.get("stations", [])
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("the token has no subject")
    if role not in {r.value for r in Role}:
        raise InvalidToken(f"the token role {role!r} is not customer or staff")
    if not isinstance(stations, list) or not all(isinstance(s, str) for s in stations):
        raise InvalidToken("the token field stations is not a list of station ids")
    issued, expires = _integer(payload, "iat"), _integer(payload, "exp")
    return Principal(subject, Role(role), frozenset(stations), issued, expires)


def _integer(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidToken(f"the token field {name} is not an integer")
    return value
