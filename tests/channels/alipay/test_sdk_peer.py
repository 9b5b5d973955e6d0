"""python-alipay-sdk as an independent merchant against the simulator over HTTP: the simulator
verifies what the SDK signs, the SDK verifies what the simulator signs (responses and notifies),
and our channel reads the same trades."""

from __future__ import annotations

from typing import Any

import trio
from alipay import AliPay

from channels.alipay import parse_form
from channels.alipay.credentials import merchant_dir
from channels.model import CallbackKind, RefundState
from tests.channels.alipay.sim_support import SimWorld
from tests.channels.alipay.support import private_pem, rsa_key


def sdk_for(world: SimWorld) -> Any:
    mdir = merchant_dir(world.keys_root, world.seller_id)
    sdk = AliPay(
        appid=world.app_id,
        app_notify_url=None,
        app_private_key_string=(mdir / "app_private_key.pem").read_text(),
        alipay_public_key_string=(mdir / "alipay_public_key.pem").read_text(),
        sign_type="RSA2",
    )
    sdk._gateway = world.url + "/gateway.do"
    return sdk


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """The SDK blocks (urllib): run it off the trio thread."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def test_sdk_trade_life_against_the_simulator(world: SimWorld) -> None:
    sdk = sdk_for(world)
    notify_url = world.receiver.url("/callbacks/alipay")
    created = await in_thread(
        sdk.api_alipay_trade_create,
        "92#汽油 100元",
        "FS-SDK-1",
        "100.00",
        notify_url=notify_url,
        buyer_id="2088102177846880",
    )
    assert created["code"] == "10000"
    trade_no = created["trade_no"]
    await world.sim.customer(world.seller_id, "FS-SDK-1", "pay")

    (notify,) = await world.receiver.wait_for(1)
    fields = dict(parse_form(notify.body).fields)
    sign = fields.pop("sign")
    assert sdk.verify(dict(fields), sign) is True  # the SDK accepts the simulator's notify
    channel = world.channel()
    event = channel.verify_callback(notify.headers, notify.body, 0.0)
    assert (event.kind, event.provider_ref, event.succeeded) == (
        CallbackKind.PAYMENT,
        trade_no,
        True,
    )

    queried = await in_thread(sdk.api_alipay_trade_query, out_trade_no="FS-SDK-1")
    assert (queried["trade_status"], queried["total_amount"]) == ("TRADE_SUCCESS", "100.00")
    refunded = await in_thread(
        sdk.api_alipay_trade_refund, "12.30", out_trade_no="FS-SDK-1", out_request_no="R1"
    )
    assert (refunded["fund_change"], refunded["refund_fee"]) == ("Y", "12.30")
    seen = await channel.refund_query("FS-SDK-1", "R1")
    assert (seen.refund, seen.amount_fen) == (RefundState.SUCCESS, 1230)
    await channel.aclose()


async def test_sdk_verifies_the_simulators_signed_business_failure(world: SimWorld) -> None:
    answer = await in_thread(sdk_for(world).api_alipay_trade_query, out_trade_no="FS-SDK-NONE")
    assert (answer["code"], answer["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")


async def test_the_simulator_refuses_a_request_signed_with_another_key(world: SimWorld) -> None:
    mdir = merchant_dir(world.keys_root, world.seller_id)
    stranger = AliPay(
        appid=world.app_id,
        app_notify_url=None,
        app_private_key_string=private_pem(rsa_key("other")),
        alipay_public_key_string=(mdir / "alipay_public_key.pem").read_text(),
    )
    stranger._gateway = world.url + "/gateway.do"
    answer = await in_thread(stranger.api_alipay_trade_query, out_trade_no="FS-SDK-1")
    assert (answer["code"], answer["sub_code"]) == ("40002", "isv.invalid-signature")
    assert world.ctx.ledger.trades() == []
