"""Every route's happy path, its refusals as problem documents, and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from switch.api import degrees_to_e6, e6_to_degrees
from switch.api.models import (
    OrderOut,
    PriceSetOut,
    PumpList,
    PumpOut,
    RefundOut,
    StationList,
    StationOut,
)
from switch.service import PayableSaleView
from switch.store import Store
from tests.switch.api.harness import ORDER_BODY, api_server, assert_problem, new_key


def test_degrees_are_exact_micro_degrees() -> None:
    assert degrees_to_e6("31.230416", 90) == 31_230_416
    assert degrees_to_e6("-0.5", 90) == -500_000
    assert degrees_to_e6("121", 180) == 121_000_000
    assert e6_to_degrees(-500_000) == "-0.500000"
    assert e6_to_degrees(121_473_701) == "121.473701"
    for bad, limit in (("31.2304161", 90), ("90.000001", 90), ("1e3", 180), ("", 90), ("٣", 90)):
        with pytest.raises(ValueError):
            degrees_to_e6(bad, limit)


async def test_stations_and_pumps(store: Store) -> None:
    async with api_server(store) as server:
        client, headers = server.client, server.customer()
        near = await client.get(
            "/v1/stations", params={"lat": "31.230000", "lon": "121.47"}, headers=headers
        )
        assert near.status_code == 200
        stations = StationList.model_validate(near.json()).items
        assert [s.id for s in stations] == ["s001"]
        assert stations[0].lat == "31.230416" and stations[0].distance_m is not None
        wider = await client.get(
            "/v1/stations",
            params={"lat": "31.23", "lon": "121.47", "radius_m": 20000, "limit": 5},
            headers=headers,
        )
        assert [s["id"] for s in wider.json()["items"]] == ["s001", "s002"]
        one = await client.get("/v1/stations/s002", headers=headers)
        assert StationOut.model_validate(one.json()).pumps_total == 2
        assert_problem(await client.get("/v1/stations/s999", headers=headers), 404, "not-found")
        server.service.stations["s001"].pumps[3].payable.append(
            PayableSaleView(7, 1, "92", 25_350, 20_000, 789_000, None)
        )
        pumps = PumpList.model_validate(
            (await client.get("/v1/stations/s001/pumps", headers=headers)).json()
        )
        assert [p.pump_no for p in pumps.items] == [1, 2, 3, 4]
        assert pumps.items[2].payable[0].amount_fen == 20_000
        assert [(n.nozzle_no, n.grade) for n in pumps.items[0].nozzles] == [(1, "92"), (2, "95")]


async def test_coordinates_are_checked(store: Store) -> None:
    async with api_server(store) as server:
        headers = server.customer()
        for params, name in (
            ({"lat": "31.2304161", "lon": "121.47"}, "lat"),
            ({"lat": "91", "lon": "121.47"}, "lat"),
            ({"lat": "31.23", "lon": "east"}, "lon"),
        ):
            response = await server.client.get("/v1/stations", params=params, headers=headers)
            document = assert_problem(response, 422, "invalid-request")
            assert document["errors"][0]["loc"] == ["query", name]
        missing = await server.client.get("/v1/stations", params={"lat": "31"}, headers=headers)
        assert "lon: Field required" in assert_problem(missing, 422, "invalid-request")["detail"]


async def test_a_prepay_order_from_creation_to_refund(store: Store) -> None:
    async with api_server(store) as server:
        client, service = server.client, server.service
        created = await client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=new_key())
        )
        assert created.status_code == 201
        order = OrderOut.model_validate(created.json())
        assert created.headers["location"] == f"/v1/orders/{order.id}"
        assert (order.held_fen, order.state, order.customer_id) == (20000, "holding", "c1")
        assert order.payment is not None and order.payment.client_data == {"prepay_id": "wx1"}
        fetched = await client.get(created.headers["location"], headers=server.customer())
        assert fetched.json() == created.json()
        assert_problem(
            await client.get(f"/v1/orders/{order.id}", headers=server.customer("c2")), 404
        )
        too_early = await client.post(
            f"/v1/orders/{order.id}/refunds",
            json={"amount_fen": 100, "reason": "overcharged"},
            headers=server.customer(key=new_key()),
        )
        assert_problem(too_early, 409, "conflict")
        service.complete(order.id, 15_000)
        key = new_key()
        refunded = await client.post(
            f"/v1/orders/{order.id}/refunds",
            json={"amount_fen": 500, "reason": "overcharged"},
            headers=server.customer(key=key),
        )
        assert refunded.status_code == 202
        refund = RefundOut.model_validate(refunded.json())
        assert (refund.amount_fen, refund.refund_id) == (500, f"{order.id}F1")
        assert key in service.refunds  # the Idempotency-Key is the refund's request key
        over = await client.post(
            f"/v1/orders/{order.id}/refunds",
            json={"amount_fen": 14_501, "reason": "overcharged"},
            headers=server.customer(key=new_key()),
        )
        assert "14500" in assert_problem(over, 409, "refund-exceeds-paid")["detail"]
        final = OrderOut.model_validate(
            (await client.get(f"/v1/orders/{order.id}", headers=server.customer())).json()
        )
        assert (final.captured_fen, final.refunded_fen, final.released_fen) == (15_000, 500, 5_000)


async def test_cancel_before_fuelling(store: Store) -> None:
    async with api_server(store) as server:
        body = ORDER_BODY | {"preset_kind": "volume", "preset_value": 30_000, "nozzle_no": 2}
        created = await server.client.post(
            "/v1/orders", json=body, headers=server.customer(key=new_key())
        )
        order_id = created.json()["id"]
        assert created.json()["held_fen"] == 25_230  # 30 L at 8.41 yuan/L, rounded up
        cancelled = await server.client.post(
            f"/v1/orders/{order_id}/cancel", headers=server.customer()
        )
        view = OrderOut.model_validate(cancelled.json())
        assert (view.state, view.terminal, view.released_fen) == ("cancelled", True, 25_230)
        again = await server.client.post(f"/v1/orders/{order_id}/cancel", headers=server.customer())
        assert_problem(again, 409, "conflict")
        bad_id = await server.client.get("/v1/orders/12345", headers=server.customer())
        assert_problem(bad_id, 422)


async def test_post_pay_at_the_pump(store: Store) -> None:
    async with api_server(store) as server:
        pump = server.service.stations["s001"].pumps[1]
        pump.payable.append(PayableSaleView(41, 1, "92", 25_350, 20_000, 789_000, None))
        url = "/v1/stations/s001/pumps/1/pay"
        moved = await server.client.post(
            url,
            json={"method": "alipay", "pump_sale_seq": 40},
            headers=server.customer(key=new_key()),
        )
        assert_problem(moved, 409, "sale-moved")
        paid = await server.client.post(
            url,
            json={"method": "alipay", "payer_id": "2088102177846880", "pump_sale_seq": 41},
            headers=server.customer(key=new_key()),
        )
        assert paid.status_code == 201
        order = OrderOut.model_validate(paid.json())
        assert (order.flow.value, order.gross_fen, order.volume_ml) == ("postpay", 20_000, 25_350)
        assert paid.headers["location"] == f"/v1/orders/{order.id}"
        nowhere = await server.client.post(
            "/v1/stations/s001/pumps/9/pay",
            json={"method": "alipay"},
            headers=server.customer(key=new_key()),
        )
        assert_problem(nowhere, 404, "not-found")


async def test_staff_set_prices_and_open_and_close_pumps(store: Store) -> None:
    async with api_server(store) as server:
        client, staff = server.client, server.staff("st1", "s001")
        body = {"items": [{"grade": "92", "unit_price_mfen_per_l": 795_000}]}
        now = await client.put("/v1/stations/s001/prices", json=body, headers=staff)
        assert PriceSetOut.model_validate(now.json()).status == "active"
        assert server.service.stations["s001"].prices["92"] == 795_000
        later = await client.put(
            "/v1/stations/s001/prices",
            json=body | {"effective_at": "2026-11-23T00:00:00+08:00"},
            headers=staff,
        )
        scheduled = PriceSetOut.model_validate(later.json())
        assert scheduled.status == "scheduled" and scheduled.effective_at is not None
        naive = await client.put(
            "/v1/stations/s001/prices",
            json=body | {"effective_at": "2026-11-23T00:00:00"},
            headers=staff,
        )
        assert_problem(naive, 422)
        unknown = await client.put(
            "/v1/stations/s001/prices",
            json={"items": [{"grade": "98", "unit_price_mfen_per_l": 900_000}]},
            headers=staff,
        )
        assert assert_problem(unknown, 422, "invalid-request")["grades"] == ["98"]
        closed = PumpOut.model_validate(
            (await client.post("/v1/stations/s001/pumps/2/close", headers=staff)).json()
        )
        assert (closed.open, closed.free, closed.state) == (False, False, "closed")
        refused = await client.post(
            "/v1/orders", json=ORDER_BODY, headers=server.customer(key=new_key())
        )
        assert_problem(refused, 409, "pump-closed")
        opened = await client.post("/v1/stations/s001/pumps/2/open", headers=staff)
        assert opened.json()["open"] is True


async def _invalid(client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await client.post("/v1/orders", json=body, headers=headers)
    document = assert_problem(response, 422, "invalid-request")
    for error in document["errors"]:  # the detail names every invalid field
        assert ".".join(error["loc"][1:]) in document["detail"]
    return document["errors"]


async def test_bodies_are_strict(store: Store) -> None:
    async with api_server(store) as server:
        headers = server.customer(key=new_key())
        client = server.client
        for field, value in (("preset_value", 200.0), ("preset_value", "20000"), ("pump_no", True)):
            errors = await _invalid(client, ORDER_BODY | {field: value}, headers)
            assert errors[0]["loc"] == ["body", field]
        errors = await _invalid(client, ORDER_BODY | {"tip_fen": 100}, headers)
        assert errors[0]["loc"] == ["body", "tip_fen"] and errors[0]["type"] == "extra_forbidden"
        errors = await _invalid(client, ORDER_BODY | {"preset_value": 0}, headers)
        assert errors[0]["loc"] == ["body", "preset_value"]
        errors = await _invalid(client, ORDER_BODY | {"method": "paypal"}, headers)
        assert errors[0]["loc"] == ["body", "method"]
        refund = await client.post(
            "/v1/orders/O0000000000000001/refunds",
            json={"amount_fen": 1.5, "reason": "x"},
            headers=server.customer(key=new_key()),
        )
        assert assert_problem(refund, 422)["errors"][0]["loc"] == ["body", "amount_fen"]
        assert server.service.calls.total() == 0


async def test_the_openapi_document_is_complete(store: Store) -> None:
    async with api_server(store) as server:
        document = (await server.client.get("/openapi.json")).json()
    paths = document["paths"]
    expected = {
        ("get", "/v1/stations"): "StationList",
        ("get", "/v1/stations/{station_id}"): "StationOut",
        ("get", "/v1/stations/{station_id}/pumps"): "PumpList",
        ("post", "/v1/orders"): "OrderOut",
        ("get", "/v1/orders/{order_id}"): "OrderOut",
        ("post", "/v1/orders/{order_id}/cancel"): "OrderOut",
        ("post", "/v1/orders/{order_id}/refunds"): "RefundOut",
        ("get", "/v1/orders/{order_id}/events"): None,
        ("post", "/v1/stations/{station_id}/pumps/{pump_no}/pay"): "OrderOut",
        ("put", "/v1/stations/{station_id}/prices"): "PriceSetOut",
        ("post", "/v1/stations/{station_id}/pumps/{pump_no}/close"): "PumpOut",
        ("post", "/v1/stations/{station_id}/pumps/{pump_no}/open"): "PumpOut",
    }
    for (method, path), model in expected.items():
        operation = paths[path][method]
        assert operation["security"] == [{"bearer": []}]
        success = next(status for status in operation["responses"] if status.startswith("2"))
        content = operation["responses"][success]["content"]
        if model is None:
            assert "text/event-stream" in content
        else:
            assert content["application/json"]["schema"]["$ref"].endswith(f"/{model}")
        assert "401" in operation["responses"]
        for status, response in operation["responses"].items():
            if status[0] in "45":
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}
        keyed = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        money = path in {"/v1/orders", "/v1/orders/{order_id}/refunds"} or path.endswith("/pay")
        assert len(keyed) == (1 if money and method == "post" else 0)
        if keyed:
            assert keyed[0]["in"] == "header" and keyed[0]["required"] is True
            assert "428" in operation["responses"]
    components = document["components"]
    assert components["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert {"Problem", "OrderOut", "CreateOrderBody"} <= set(components["schemas"])
    create = components["schemas"]["CreateOrderBody"]
    assert create["additionalProperties"] is False
    assert create["properties"]["preset_value"]["type"] == "integer"
