"""A claim whose process died mid-request, on the real ``api_idempotency_keys`` table: the
next retry in another process takes it over (the key is not stuck "in progress" for a day),
runs with the first run's ``claimed_at`` (so it derives the same order id and finds what
the first run made), and only the new owner stores the answer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from switch.api.idempotency import TAKE_OVER_AFTER_S, Claim, IdempotencyStore, StoredResponse
from switch.api.problems import ApiProblem
from switch.store import Store
from tests.switch.api.harness import new_key

ME = "customer:c1"
ANSWER_TIME = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
ANSWER = StoredResponse(201, b'{"id": "O1"}', "application/json", {"location": "/v1/orders/O1"})


async def _status(store: Store, key: str) -> list[tuple[int | None, str | None]]:
    rows = await store.db.fetch(
        "SELECT status, owner FROM api_idempotency_keys WHERE principal = $1 AND key = $2",
        ME,
        key,
    )
    return [(row["status"], row["owner"]) for row in rows]


async def test_a_claim_of_a_dead_process_is_taken_over_with_its_first_claim_time(
    store: Store,
) -> None:
    dead = IdempotencyStore(store.db)  # SIGKILLed while it ran the request
    key = new_key()
    first = await dead.claim(ME, key, b"fp")
    assert isinstance(first, Claim)
    with pytest.raises(ApiProblem) as busy:  # the same process: the first run is still on
        await dead.claim(ME, key, b"fp")
    assert busy.value.status == 409

    restarted = IdempotencyStore(store.db)
    with pytest.raises(ApiProblem) as reused:  # another request under the key: still refused
        await restarted.claim(ME, key, b"another")
    assert reused.value.status == 422
    again = await restarted.claim(ME, key, b"fp")
    assert isinstance(again, Claim)
    assert again.claimed_at == first.claimed_at
    assert again.taken_over and not first.taken_over
    assert again.resource_id("O") == first.resource_id("O")
    assert await _status(store, key) == [(None, restarted.instance)]
    assert restarted.statistics()["taken_over"] == 1

    # The old owner, were it alive after all, can neither answer nor give the claim up.
    await dead.finish(ME, key, ANSWER)
    await dead.abandon(ME, key)
    assert await _status(store, key) == [(None, restarted.instance)]
    await restarted.finish(ME, key, ANSWER)
    replay = await IdempotencyStore(store.db).claim(ME, key, b"fp")
    assert replay == ANSWER


async def test_a_claim_older_than_any_request_is_taken_over_in_its_own_process(
    store: Store,
) -> None:
    now = [1_900_000_000.0]
    keys = IdempotencyStore(store.db, clock=lambda: now[0])
    key = new_key()
    first = await keys.claim(ME, key, b"fp")
    assert isinstance(first, Claim)
    now[0] += TAKE_OVER_AFTER_S - 1
    with pytest.raises(ApiProblem):
        await keys.claim(ME, key, b"fp")
    now[0] += 1
    again = await keys.claim(ME, key, b"fp")
    assert isinstance(again, Claim) and again.claimed_at == first.claimed_at


def test_resource_ids_differ_by_principal_key_and_claim_time() -> None:
    first = Claim(ME, "k1", ANSWER_TIME)
    assert first.resource_id("O") == Claim(ME, "k1", ANSWER_TIME).resource_id("O")
    others = {
        Claim("customer:c2", "k1", ANSWER_TIME).resource_id("O"),
        Claim(ME, "k2", ANSWER_TIME).resource_id("O"),
        Claim(ME, "k1", LATER).resource_id("O"),
    }
    assert first.resource_id("O") not in others and len(others) == 3
    assert first.resource_id("O").startswith("O") and len(first.resource_id("O")) == 17
