"""Request builders: targets, bodies, validation, signing."""

from __future__ import annotations

from datetime import UTC, date, datetime

import orjson
import pytest

from channels.wechatpay import Authorization, ProtocolError, rsa_verify
from channels.wechatpay import requests as wxreq
from tests.channels.wechatpay.support import APPID, MCHID, WxWorld


def _prepay(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "appid": APPID,
        "mchid": MCHID,
        "description": "92# 汽油 3号枪",
        "out_trade_no": "FS20261120000001",
        "notify_url": "https://switch.example/callbacks/wechatpay",
        "total_fen": 20000,
        "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    }
    values.update(overrides)
    return values


def test_jsapi_prepay_body() -> None:
    request = wxreq.jsapi_prepay(
        **_prepay(time_expire=datetime(2026, 11, 20, 0, 0, tzinfo=UTC), attach="S001")  # type: ignore[arg-type]
    )
    assert (request.method, request.target) == ("POST", "/v3/pay/transactions/jsapi")
    assert request.headers["Content-Type"] == "application/json"
    body = orjson.loads(request.body)
    assert body["amount"] == {"total": 20000, "currency": "CNY"}
    assert body["payer"] == {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
    assert body["time_expire"] == "2026-11-20T08:00:00+08:00"
    assert body["attach"] == "S001"
    assert b" " not in request.body.replace("汽油 3号枪".encode(), b"").replace(b"92# ", b"")


@pytest.mark.parametrize(
    "overrides",
    [
        {"out_trade_no": "FS123"},  # < 6
        {"out_trade_no": "F" * 33},
        {"out_trade_no": "FS2026/1120"},
        {"total_fen": 0},
        {"total_fen": -1},
        {"total_fen": 12.5},
        {"total_fen": True},
        {"description": ""},
        {"description": "x" * 128},
        {"openid": ""},
    ],
)
def test_jsapi_prepay_refuses_what_wechat_would(overrides: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        wxreq.jsapi_prepay(**_prepay(**overrides))  # type: ignore[arg-type]


def test_naive_time_expire_is_refused() -> None:
    with pytest.raises(ValueError):
        wxreq.jsapi_prepay(**_prepay(time_expire=datetime(2026, 11, 20)))  # type: ignore[arg-type]


def test_query_close_refund_targets() -> None:
    assert wxreq.query_by_out_trade_no("FS2026|0001*", MCHID).target == (
        f"/v3/pay/transactions/out-trade-no/FS2026%7C0001%2A?mchid={MCHID}"
    )
    assert wxreq.query_by_id("4200002026112000000001", MCHID).target == (
        f"/v3/pay/transactions/id/4200002026112000000001?mchid={MCHID}"
    )
    close = wxreq.close("FS20261120000001", MCHID)
    assert close.target == "/v3/pay/transactions/out-trade-no/FS20261120000001/close"
    assert orjson.loads(close.body) == {"mchid": MCHID}
    assert wxreq.refund_query("FS1-R1").target == "/v3/refund/domestic/refunds/FS1-R1"
    assert wxreq.certificates().target == "/v3/certificates"
    assert wxreq.tradebill(date(2026, 11, 20)).target == (
        "/v3/bill/tradebill?bill_date=2026-11-20&bill_type=ALL&tar_type=GZIP"
    )
    assert wxreq.tradebill(date(2026, 11, 20), tar_type=None).target.endswith("bill_type=ALL")
    assert wxreq.download(
        "https://api.mch.weixin.qq.com/v3/billdownload/file?token=ab%2Bc"
    ).target == ("/v3/billdownload/file?token=ab%2Bc")


def test_refund_body() -> None:
    request = wxreq.refund(
        out_trade_no="FS20261120000001",
        out_refund_no="FS20261120000001-R1",
        refund_fen=5000,
        total_fen=20000,
        reason="找零",
        notify_url="https://switch.example/callbacks/wechatpay",
    )
    body = orjson.loads(request.body)
    assert body["amount"] == {"refund": 5000, "total": 20000, "currency": "CNY"}
    assert body["out_trade_no"] == "FS20261120000001"
    assert "transaction_id" not in body
    by_id = orjson.loads(
        wxreq.refund(
            transaction_id="4200002026112000000001", out_refund_no="R1", refund_fen=1, total_fen=1
        ).body
    )
    assert by_id["transaction_id"] == "4200002026112000000001" and "out_trade_no" not in by_id
    with pytest.raises(ProtocolError):
        wxreq.refund(out_refund_no="R1", refund_fen=1, total_fen=1)
    with pytest.raises(ProtocolError):
        wxreq.refund(out_trade_no="FS20261120000001", out_refund_no="R1", refund_fen=2, total_fen=1)


def test_sign_covers_target_and_exact_body(wx: WxWorld) -> None:
    request = wxreq.jsapi_prepay(**_prepay())  # type: ignore[arg-type]
    signed = wxreq.sign(
        request,
        mchid=MCHID,
        serial_no=wx.merchant.merchant_serial,
        private_key=wx.merchant.private_key,
        timestamp=1_795_000_000,
        nonce="N0NCE",
    )
    assert signed.body == request.body
    auth = Authorization.parse(signed.headers["Authorization"])
    assert (auth.mchid, auth.serial_no, auth.timestamp, auth.nonce_str) == (
        MCHID,
        wx.merchant.merchant_serial,
        "1795000000",
        "N0NCE",
    )
    public = wx.merchant.private_key.public_key()
    rsa_verify(public, auth.message("POST", signed.target, signed.body), auth.signature)


def test_jsapi_pay_params(wx: WxWorld) -> None:
    params = wxreq.jsapi_pay_params(
        APPID,
        "wx201410272009395522657a690389285100",
        wx.merchant.private_key,
        timestamp=1414561699,
        nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
    )
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA"
    message = (
        f"{APPID}\n1414561699\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n{params['package']}\n".encode()
    )
    rsa_verify(wx.merchant.private_key.public_key(), message, params["paySign"])
