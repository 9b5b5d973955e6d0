"""The simulated gateway's own checks and methods, spoken to with raw HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from channels.alipay import (
    BizCall,
    GatewayReply,
    encode_form,
    fund_freeze,
    load_credentials,
    read_reply,
    request_sign_content,
    sign_content,
    sign_request,
    trade_cancel,
    trade_close,
    trade_create,
    trade_query,
    trade_refund,
)
from channels.alipay.credentials import merchant_dir
from channels.model import CallbackKind
from tests.channels.alipay.sim_support import SimWorld
from tests.channels.alipay.support import rsa_key

NOW = datetime(2026, 11, 20, 8, 0, 0)


async def post(world: SimWorld, body: bytes, query: str = "", method: str = "") -> GatewayReply:
    creds = load_credentials(merchant_dir(world.keys_root, world.seller_id))
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"{world.url}/gateway.do" + (f"?{query}" if query else ""),
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert reply.status_code == 200
    charset = reply.headers["content-type"].split("charset=")[-1]
    return read_reply(reply.content, method or "x.unknown", creds.alipay_public_key, charset)


def signed(world: SimWorld, call: BizCall, charset: str = "utf-8", **extra: str) -> dict[str, str]:
    creds = load_credentials(merchant_dir(world.keys_root, world.seller_id))
    fields = sign_request(
        call,
        app_id=world.app_id,
        key=creds.app_private_key,
        timestamp=NOW,
        notify_url=world.receiver.url("/callbacks/alipay"),
        charset=charset,
    )
    fields.update(extra)
    return fields


async def call(world: SimWorld, biz: BizCall, charset: str = "utf-8") -> GatewayReply:
    return await post(world, encode_form(signed(world, biz, charset), charset), method=biz.method)


@pytest.mark.parametrize(
    ("change", "code", "sub_code"),
    [
        ({"sign": ""}, "40001", "isv.missing-sign"),
        ({"sign_type": "RSA"}, "40002", "isv.invalid-signature-type"),
        ({"app_id": "2021999999999999"}, "40002", "isv.invalid-app-id"),
        ({"timestamp": "2026-11-20 08:00:01"}, "40002", "isv.invalid-signature"),
        ({"method": "alipay.trade.page.pay"}, "40002", "isv.invalid-signature"),
    ],
)
async def test_refused_requests_get_signed_gateway_errors(
    world: SimWorld, change: dict[str, str], code: str, sub_code: str
) -> None:
    fields = signed(world, trade_query("FS-G1"), **change)
    reply = await post(world, encode_form(fields), method="alipay.trade.query")
    assert (reply.code, reply.sub_code) == (code, sub_code)


async def test_unknown_method_and_bad_biz_content_are_refused(world: SimWorld) -> None:
    unknown = BizCall("alipay.trade.page.pay", {"out_trade_no": "FS"})
    reply = await post(world, encode_form(signed(world, unknown)))
    assert (reply.code, reply.sub_code) == ("40002", "isv.invalid-method")
    creds = load_credentials(merchant_dir(world.keys_root, world.seller_id))
    fields = signed(world, trade_query("FS"))
    fields["biz_content"] = "[1]"
    fields["sign"] = sign_content(request_sign_content(fields), creds.app_private_key)
    reply = await post(world, encode_form(fields), method="alipay.trade.query")
    assert reply.sub_code == "isv.invalid-biz-content"


async def test_duplicated_fields_are_refused_in_one_half_and_across_both(world: SimWorld) -> None:
    body = encode_form(signed(world, trade_query("FS")))
    twice = await post(world, body + b"&app_id=" + world.app_id.encode())
    assert (twice.code, twice.sub_code) == ("40002", "isv.duplicate_field")
    across = await post(world, body, query=f"app_id={world.app_id}")
    assert across.sub_code == "isv.duplicate_field"


async def test_a_request_signed_by_a_stranger_leaves_no_trade(world: SimWorld) -> None:
    fields = sign_request(
        trade_create("FS-G2", 100, "s", "2088"),
        app_id=world.app_id,
        key=rsa_key("other"),
        timestamp=NOW,
    )
    reply = await post(world, encode_form(fields), method="alipay.trade.create")
    assert reply.sub_code == "isv.invalid-signature"
    assert world.ctx.ledger.trades() == []


async def test_gbk_request_gets_a_gbk_answer_and_gbk_notifies(world: SimWorld) -> None:
    created = await call(world, trade_create("FS-GBK", 5000, "95#汽油 一号站", "2088"), "gbk")
    assert created.code == "10000"
    await world.sim.customer(world.seller_id, "FS-GBK", "pay")
    (notify,) = await world.receiver.wait_for(1)
    assert b"charset=gbk" in notify.body
    channel = world.channel()
    event = channel.verify_callback(notify.headers, notify.body, 0.0)
    assert (event.kind, event.succeeded, event.raw["subject"]) == (
        CallbackKind.PAYMENT,
        True,
        "95#汽油 一号站",
    )
    assert "&quot;" in event.raw["fund_bill_list"]
    await channel.aclose()


async def test_trade_create_close_cancel(world: SimWorld) -> None:
    assert (await call(world, trade_create("FS-T1", 100, "s", "2088"))).code == "10000"
    closed = await call(world, trade_close("FS-T1"))
    assert closed.code == "10000"
    refused = await call(world, trade_refund("FS-T1", 100, "R"))
    assert refused.sub_code == "ACQ.TRADE_HAS_CLOSE"
    assert (await call(world, trade_create("FS-T2", 100, "s", "2088"))).code == "10000"
    await world.sim.customer(world.seller_id, "FS-T2", "pay")
    not_closable = await call(world, trade_close("FS-T2"))
    assert not_closable.sub_code == "ACQ.TRADE_STATUS_ERROR"  # a paid trade is refunded instead
    cancelled = await call(world, trade_cancel("FS-T2"))
    assert cancelled.body["action"] == "refund"
    status: dict[str, Any] = dict((await call(world, trade_query("FS-T2"))).body)
    assert status["trade_status"] == "TRADE_CLOSED"


async def test_freeze_requires_the_preauth_product_and_our_payee(world: SimWorld) -> None:
    wrong_payee = await call(world, fund_freeze("FS-P1", "FS-P1", 100, "t", payee_user_id="2088x"))
    assert wrong_payee.sub_code == "PAYEE_NOT_MATCH"
    other = BizCall(
        "alipay.fund.auth.order.app.freeze",
        {
            "out_order_no": "FS-P2",
            "out_request_no": "FS-P2",
            "order_title": "t",
            "amount": "1.00",
            "product_code": "PRE_AUTH",
        },
    )
    assert (await call(world, other)).sub_code == "PRODUCT_CODE_ERROR"
