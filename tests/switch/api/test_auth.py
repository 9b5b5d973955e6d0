"""Bearer tokens: the signer on its own, then every way a request can fail authentication."""

from __future__ import annotations

import base64

import orjson
import pytest

from switch.api import InvalidToken, Role, TokenSigner
from switch.store import Store
from tests.switch.api.harness import START, api_server, assert_problem

SECRET = b"0123456789abcdef0123456789abcdef"


def test_a_token_round_trips_with_its_claims() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("staff-7", Role.STAFF, stations=["s002", "s001"], ttl_s=600, now=START)
    principal = signer.verify(token, START + 599)
    assert principal.subject == "staff-7"
    assert principal.role is Role.STAFF
    assert principal.stations == frozenset({"s001", "s002"})
    assert (principal.issued_at, principal.expires_at) == (int(START), int(START) + 600)
    assert principal.manages("s001") and not principal.manages("s003")
    assert principal.key == "staff:staff-7"
    assert signer.statistics() == {"issued": 1, "verified": 1, "rejected": 0}


def test_refusals_say_precisely_what_is_wrong() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("c1", Role.CUSTOMER, ttl_s=60, now=START)
    signature = token.split(".")[1]
    other = TokenSigner(b"x" * 32).issue("c1", Role.CUSTOMER, ttl_s=60, now=START)
    forged_payload = base64.urlsafe_b64encode(
        orjson.dumps({"sub": "c2", "role": "customer", "stations": [], "iat": 0, "exp": 2**40})
    ).rstrip(b"=")
    cases = {
        "expired": (token, START + 60),
        "malformed": ("not-a-token", START),
        "not base64url": ("a.b!c", START),
        "signature does not match": (f"{forged_payload.decode()}.{signature}", START),
        "does not match": (other, START),
    }
    for expected, (candidate, now) in cases.items():
        with pytest.raises(InvalidToken) as refused:
            signer.verify(candidate, now)
        assert expected in refused.value.detail
    assert signer.statistics()["rejected"] == len(cases)


def test_a_signed_payload_of_the_wrong_shape_is_refused() -> None:
    signer = TokenSigner(SECRET)

    def signed(payload: object) -> str:
        segment = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
        return f"{segment}.{base64.urlsafe_b64encode(signer._mac(segment)).rstrip(b'=').decode()}"

    with pytest.raises(InvalidToken, match="role 'admin'"):
        signer.verify(signed({"sub": "c1", "role": "admin", "iat": 0, "exp": 2**40}), START)
    with pytest.raises(InvalidToken, match="exp is not an integer"):
        signer.verify(signed({"sub": "c1", "role": "customer", "iat": 0, "exp": 1.5}), START)
    with pytest.raises(InvalidToken, match="not an object"):
        signer.verify(signed([1, 2]), START)


def test_a_short_secret_or_a_station_less_staff_token_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenSigner(b"short")
    signer = TokenSigner(SECRET)
    with pytest.raises(ValueError, match="at least one station"):
        signer.issue("staff-1", Role.STAFF, ttl_s=60, now=START)
    with pytest.raises(ValueError, match="no stations"):
        signer.issue("c1", Role.CUSTOMER, stations=["s001"], ttl_s=60, now=START)


async def test_requests_without_a_usable_token_get_401(store: Store) -> None:
    async with api_server(store) as server:
        client = server.client
        missing = assert_problem(await client.get("/v1/stations/s001"), 401, "unauthorized")
        assert "Bearer token is required" in missing["detail"]
        expired_token = server.token("c1", Role.CUSTOMER, ttl_s=30)
        server.clock.now += 30
        expired = await client.get(
            "/v1/stations/s001", headers={"Authorization": f"Bearer {expired_token}"}
        )
        assert "expired at" in assert_problem(expired, 401)["detail"]
        assert expired.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        good = server.token("c1", Role.CUSTOMER)
        tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
        response = await client.get(
            "/v1/stations/s001", headers={"Authorization": f"Bearer {tampered}"}
        )
        assert "signature does not match" in assert_problem(response, 401)["detail"]
        basic = await client.get("/v1/stations/s001", headers={"Authorization": "Basic eDp5"})
        assert_problem(basic, 401)
        assert basic.headers["www-authenticate"] == 'Bearer realm="fuelswitch"'
        assert (await client.get("/v1/stations/s001", headers=server.customer())).status_code == 200


async def test_roles_and_stations_are_enforced(store: Store) -> None:
    async with api_server(store) as server:
        client = server.client
        prices = {"items": [{"grade": "92", "unit_price_mfen_per_l": 790_000}]}
        as_customer = await client.put(
            "/v1/stations/s001/prices", json=prices, headers=server.customer()
        )
        assert "needs a staff token" in assert_problem(as_customer, 401, "unauthorized")["detail"]
        assert as_customer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        as_staff = await client.get(
            "/v1/orders/O0000000000000001", headers=server.staff("st1", "s001")
        )
        assert "needs a customer token" in assert_problem(as_staff, 401)["detail"]
        elsewhere = await client.post(
            "/v1/stations/s001/pumps/1/close", headers=server.staff("st2", "s002")
        )
        assert "no role at station s001" in assert_problem(elsewhere, 403, "forbidden")["detail"]
        assert server.service.stations["s001"].pumps[1].open
        everywhere = await client.post(
            "/v1/stations/s001/pumps/1/close", headers=server.staff("boss", "*")
        )
        assert everywhere.status_code == 200 and everywhere.json()["open"] is False
        assert server.api.statistics()["tokens"]["rejected"] == 0
