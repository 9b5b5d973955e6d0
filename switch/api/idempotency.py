"""``Idempotency-Key`` for requests that move money or create things, kept in PostgreSQL.

A mobile client that loses the answer to "create my order" must be able to ask again without
creating a second order (and a second hold on the customer's card). The first request with a
key claims a row of ``api_idempotency_keys`` (principal, key) with the SHA-256 of what was
asked; when it ends, its answer is stored there. Then:

- the same key with the same request gets the stored answer again (``Idempotent-Replayed``);
- the same key with another request is a client bug: 422 ``idempotency-key-reused``;
- the same key while the first is still running: 409 ``idempotency-request-in-progress``;
- a refusal (4xx) is an answer and is stored; a fault (5xx, a crash, a cancellation) deletes the
  claim, because nothing was decided and the retry must really run again;
- after 24 h a key may be reused for anything (the expired row is replaced).

The claim is one ``INSERT ... ON CONFLICT`` so two concurrent first requests cannot both win.

A claim left in progress by a process that died mid-request (a crash, a SIGKILL, a restart
after an OOM kill) is taken over by the next retry that reaches another process (each
process has its own ``instance`` id, stored as the claim's owner), or by any retry once the
claim is older than ``TAKE_OVER_AFTER_S``. Running the operation again is safe because the
operations derive the ids of what they create from the claim (``Claim.resource_id``: the
principal, the key and when it was first claimed, which a takeover keeps): a second run
finds the order the first one created and answers with it. Before this, such a key stayed
"in progress" (409) for its whole 24 h, and the customer could not learn what became of
the order. Only the claim's owner stores an answer or gives the claim up.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
import trio
from fastapi.responses import Response

from switch.service import ServiceError
from switch.store import Database, StoreError, StoreUnavailable

from .problems import ApiProblem, service_problem

__all__ = [
    "DEFAULT_TTL_S",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "Claim",
    "IdempotencyStore",
    "StoredResponse",
    "check_key",
    "request_fingerprint",
]

log = structlog.get_logger("api")

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
DEFAULT_TTL_S = 24 * 3600
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII: it is logged and passed to providers
_KEY = re.compile(KEY_PATTERN)
_KEPT_HEADERS = ("location",)  # what a replay must repeat besides status and body
_CLAIM_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, response: Response) -> StoredResponse:
        kept = {name: response.headers[name] for name in _KEPT_HEADERS if name in response.headers}
        media_type = response.media_type or "application/json"
        return cls(response.status_code, bytes(response.body), media_type, kept)

    def encode(self) -> bytes:
        envelope = {"media_type": self.media_type, "headers": dict(self.headers)}
        return orjson.dumps(envelope | {"body": self.body.decode()})

    @classmethod
    def decode(cls, status: int, raw: bytes) -> StoredResponse:
        envelope = orjson.loads(raw)
        body = envelope["body"].encode()
        return cls(status, body, envelope["media_type"], envelope["headers"])

    def replay(self) -> Response:
        headers = {**self.headers, REPLAYED_HEADER: "true"}
        return Response(self.body, self.status, headers=headers, media_type=self.media_type)


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to run the request of ``key`` (first claimed at ``claimed_at``)."""

    principal: str
    key: str
    claimed_at: datetime
    taken_over: bool = False  # from a process that died under it: this is a second run

    def resource_id(self, prefix: str) -> str:
        """The id of what this request creates: the same for every run of the request
        (a retry that takes over a dead process's claim finds what the first run made),
        another one if the key is used again after it expired."""
        seed = f"{self.principal}\n{self.key}\n{self.claimed_at.isoformat()}".encode()
        return prefix + hashlib.sha256(seed).hexdigest()[:16].upper()


def check_key(key: str | None) -> str:
    """The key, or the problem a client must fix before it may retry anything."""
    if key is None:
        raise ApiProblem(
            428,
            "idempotency-key-required",
            f"this request moves money or creates something: send an {IDEMPOTENCY_HEADER} "
            "header (a fresh random value, reused only to retry this same request)",
        )
    if not _KEY.match(key):
        raise ApiProblem(
            400,
            "idempotency-key-invalid",
            f"the {IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters",
        )
    return key


def request_fingerprint(method: str, path: str, body: Any) -> bytes:
    """SHA-256 of the method, the path and the body in canonical JSON (sorted keys, no
    spaces): the same request written with its fields in another order is the same request."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(f"{method.upper()} {path}\n".encode() + canonical).digest()


_CLAIM = """
INSERT INTO api_idempotency_keys (principal, key, request_hash, created_at, expires_at, owner)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (principal, key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, status = NULL, response = NULL,
       created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at, owner = EXCLUDED.owner
 WHERE api_idempotency_keys.expires_at <= EXCLUDED.created_at
RETURNING created_at
"""
_EXISTING = """
SELECT request_hash, status, response, created_at, owner FROM api_idempotency_keys
 WHERE principal = $1 AND key = $2
"""
_TAKE_OVER = """
UPDATE api_idempotency_keys SET owner = $3
 WHERE principal = $1 AND key = $2 AND status IS NULL AND owner IS NOT DISTINCT FROM $4
RETURNING created_at
"""
_FINISH = """
UPDATE api_idempotency_keys SET status = $3, response = $4
 WHERE principal = $1 AND key = $2 AND status IS NULL AND owner IS NOT DISTINCT FROM $5
"""
_ABANDON = """
DELETE FROM api_idempotency_keys
 WHERE principal = $1 AND key = $2 AND status IS NULL AND owner IS NOT DISTINCT FROM $3
"""
# A claim this old is taken over even from a live owner: no request runs this long (an
# order's create waits at most a few seconds for the provider), so its owner lost it.
TAKE_OVER_AFTER_S = 120.0
_RECENT = """
SELECT key FROM api_idempotency_keys WHERE expires_at >= $1
ORDER BY expires_at DESC LIMIT $2
"""
RECENT_S = 15 * 60  # longer than any client's retry window
RECENT_MAX = 200_000
_PURGE = "DELETE FROM api_idempotency_keys WHERE expires_at <= $1"


class IdempotencyStore:
    """The claims and stored answers; ``clock`` (epoch seconds) decides expiry."""

    def __init__(
        self,
        db: Database,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
        instance: str | None = None,
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self.instance = instance or secrets.token_hex(8)  # this process, as claims' owner
        self._counts = dict.fromkeys(
            ["claimed", "replayed", "reused", "in_progress", "taken_over", "stored", "abandoned"],
            0,
        )
        # Keys claimed lately (this process, and the last RECENT_S before it started): what
        # admission control asks of a request it would shed, without a database call.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_loaded = False

    def statistics(self) -> dict[str, int]:
        return dict(self._counts)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def claim(self, principal: str, key: str, fingerprint: bytes) -> Claim | StoredResponse:
        """A ``Claim``: this request owns the key and must run. Otherwise the stored answer,
        or the problem (reused for another request, first one still in progress)."""
        for _ in range(_CLAIM_ATTEMPTS):
            now = self._now()
            expires = datetime.fromtimestamp(now.timestamp() + self._ttl_s, UTC)
            args = (principal, key, fingerprint, now, expires, self.instance)
            claimed_at = await self._db.fetchval(_CLAIM, *args)
            if claimed_at is not None:
                self._counts["claimed"] += 1
                self._remember(key)
                return Claim(principal, key, claimed_at)
            row = await self._db.fetchrow(_EXISTING, principal, key)
            if row is None:  # the holder abandoned it between our two statements: try again
                continue
            if bytes(row["request_hash"]) != fingerprint:
                self._counts["reused"] += 1
                raise ApiProblem(
                    422,
                    "idempotency-key-reused",
                    f"this {IDEMPOTENCY_HEADER} was already used for a different request; "
                    "use a new key for a new request",
                )
            if row["status"] is None:
                if not self._lost(row["owner"], row["created_at"], now):
                    break
                taken = await self._db.fetchval(
                    _TAKE_OVER, principal, key, self.instance, row["owner"]
                )
                if taken is None:  # answered, abandoned or taken meanwhile: look again
                    continue
                self._counts["taken_over"] += 1
                self._remember(key)
                log.warning("api.idempotency_taken_over", key=key, owner=row["owner"])
                return Claim(principal, key, taken, taken_over=True)
            self._counts["replayed"] += 1
            return StoredResponse.decode(row["status"], bytes(row["response"]))
        self._counts["in_progress"] += 1
        raise ApiProblem(
            409,
            "idempotency-request-in-progress",
            f"the first request with this {IDEMPOTENCY_HEADER} is still being handled; "
            "retry shortly with the same key",
        )

    def _lost(self, owner: str | None, claimed_at: datetime, now: datetime) -> bool:
        """Whether an in-progress claim lost its owner: another process's (this one is the
        only one that could still be running it here), or too old to be running at all."""
        if owner != self.instance:
            return True
        return (now - claimed_at).total_seconds() >= TAKE_OVER_AFTER_S

    async def key_taken(self, key: str) -> bool:
        """Whether ``key`` was claimed lately (answered or in progress): a retry of a request
        the switch has taken, which admission control must not shed. Asked before the token
        is read, so by key alone (keys are random; a false match only lets a request through
        to the route's own claim).

        Answered from memory: a refusal must cost no database call, or shedding a flood would
        itself queue the database (measured: 1,500 calls waiting, 10 s each, at 150 refusals
        a second). The keys claimed in the last ``RECENT_S`` before this process started are
        read once, on the first question, so a retry across a restart is still recognised;
        the memory keeps the newest ``RECENT_MAX`` keys, more than any retry window needs.
        """
        await self._load_recent()
        return key in self._recent

    async def _load_recent(self) -> None:
        if not self._recent_loaded:
            self._recent_loaded = True
            # expires_at (indexed) = created_at + the TTL
            since = datetime.fromtimestamp(self._clock() - RECENT_S + self._ttl_s, UTC)
            for row in reversed(await self._db.fetch(_RECENT, since, RECENT_MAX)):
                self._remember(str(row["key"]))  # oldest first, as claims arrive

    def _remember(self, key: str) -> None:
        recent = self._recent
        recent[key] = None
        recent.move_to_end(key)
        if len(recent) > RECENT_MAX:
            recent.popitem(last=False)

    async def finish(self, principal: str, key: str, answer: StoredResponse) -> None:
        args = (principal, key, answer.status, answer.encode(), self.instance)
        await self._db.execute(_FINISH, *args)
        self._counts["stored"] += 1

    async def abandon(self, principal: str, key: str) -> None:
        await self._db.execute(_ABANDON, principal, key, self.instance)
        self._counts["abandoned"] += 1

    async def purge(self) -> int:
        """Delete expired rows (claims replace them anyway; this keeps the table small)."""
        status = await self._db.execute(_PURGE, self._now())
        return int(status.rsplit(" ", 1)[-1])

    async def run(
        self,
        principal: str,
        key: str | None,
        fingerprint: bytes,
        instance: str,
        operation: Callable[[Claim], Awaitable[Response]],
    ) -> Response:
        """Run ``operation(claim)`` once per key (again only after its owner was lost, and
        then it finds what the first run created), replaying its answer to retries."""
        key = check_key(key)
        try:
            claimed = await self.claim(principal, key, fingerprint)
        except StoreUnavailable:
            # Without the claim nothing may run (it could run twice): say "retry", not "broke".
            raise ApiProblem(
                503,
                "unavailable",
                "the switch cannot record idempotency keys right now; retry with the same key",
                headers={"Retry-After": "2"},
            ) from None
        if isinstance(claimed, StoredResponse):
            return claimed.replay()
        settled = False
        try:
            try:
                response = await operation(claimed)
            except ServiceError as error:
                response = service_problem(error, instance)
            except ApiProblem as refused:
                response = refused.response(instance)
            if response.status_code < 500:
                await self.finish(principal, key, StoredResponse.of(response))
                settled = True
            return response
        finally:
            if not settled:  # a fault, a 5xx or a cancellation: the retry must run again
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    try:
                        await self.abandon(principal, key)
                    except StoreError as exc:  # the original fault is the one to report
                        log.warning("api.idempotency_abandon_failed", key=key, error=str(exc))
