"""The simulated WeChat Pay API v3: every endpoint the switch uses, over real HTTP.

It is as strict as WeChat is with the merchant (every request's ``Authorization`` is verified
against the merchant's API certificate: 401 SIGN_ERROR otherwise) and as WeChat is with itself
(every 2xx JSON answer is signed, by a platform certificate or the merchant's WeChat Pay public
key as ``wechatpay_keys`` decides; error answers and bill downloads are not). Business rules
live in ``wechatpay_trades``, bills in ``wechatpay_bill``, notifications in ``wechatpay_notify``.

Two clocks: business time (payment times, bill days, refund completion, key rotation) is the
shared ``SimClock``, so a test can jump a day; the ``Wechatpay-Timestamp`` of an answer or a
callback, and the freshness check of a request, use the wall clock, because the receiver
checks it against *its* clock and a simulated day's jump must not make every callback stale.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar

import orjson
import structlog
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.model import Provider
from channels.sim.base import CustomerError, ProviderSim, SimContext, SimMerchant
from channels.sim.callbacks import WECHATPAY_RETRY_S, Delivery
from channels.sim.ledger import SimRefund, Trade
from channels.sim.wechatpay_bill import bill_rows, render_tradebill
from channels.sim.wechatpay_keys import MerchantKeys, ProviderKeys
from channels.sim.wechatpay_notify import notification_body, random_nonce, signed_headers
from channels.sim.wechatpay_trades import (
    SimApiError,
    accept_refund,
    close,
    find_refundable,
    mark_paid,
    prepay,
    refund_view,
    transaction_view,
)
from channels.wechatpay import (
    Authorization,
    WeChatPayError,
    build_certificates_response,
    from_rfc3339,
    generate,
    merchant_dir,
    rsa_verify,
)
from channels.wechatpay.times import CST

__all__ = ["REFUND_DELAY_S", "VERIFY_CYCLE", "WeChatPaySim"]

log = structlog.get_logger(__name__)

WX = Provider.WECHATPAY
REFUND_DELAY_S = 0.5  # simulated seconds from PROCESSING to SUCCESS
REQUEST_WINDOW_S = 300
BILL_LINK_S = 300.0  # a download link is valid five minutes
MAX_BODY = 64 * 1024
# merchants in order: platform certificates, migrating (both at random), WeChat Pay public key
VERIFY_CYCLE = ("certificate", "mixed", "public_key")
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")

Handler = Callable[[Request, MerchantKeys, bytes], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Download:
    mchid: str
    data: bytes
    expires_at: float


def _param_error(message: str) -> SimApiError:
    return SimApiError(400, "PARAM_ERROR", message)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _param_error("请求体不是合法的JSON") from None
    if not isinstance(document, dict):
        raise _param_error("请求体必须是JSON对象")
    return document


def _amount(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _param_error(f"{name} 必须是正整数")
    return value


def _text(document: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
        raise _param_error(f"{name} 缺失或格式错误")
    return value


class WeChatPaySim(ProviderSim):
    provider: ClassVar[Provider] = WX

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.keys = ProviderKeys(self.provider_keys_dir)
        self._rng = ctx.rng
        self._prepay_ids: dict[tuple[str, str], str] = {}
        self._downloads: dict[str, _Download] = {}

    # -- keys and material -----------------------------------------------------------------

    @classmethod
    def ensure_keys(cls, keys_root: Path, merchants: list[SimMerchant]) -> None:
        modes = {
            m.merchant_id: VERIFY_CYCLE[i % len(VERIFY_CYCLE)] for i, m in enumerate(merchants)
        }
        pairs = [(m.merchant_id, m.app_id) for m in merchants]
        generate(keys_root / WX.value, pairs, now=time.time(), verify_modes=modes)

    def public_material(self) -> dict[str, Any]:
        now = self.ctx.clock.now()
        listed = [cert.serial for cert in self.keys.listed(now)]
        merchants = []
        for merchant in self.merchants:
            keys = self.keys.merchants[merchant.merchant_id]
            merchants.append(
                {
                    "merchant_id": merchant.merchant_id,
                    "app_id": merchant.app_id,
                    "keys_dir": str(merchant_dir(self.provider_keys_dir, merchant.merchant_id)),
                    "merchant_serial": keys.merchant_serial,
                    "verify_mode": keys.verify_mode,
                    "public_key_id": keys.public_key.serial if keys.public_key else None,
                    "platform_serials": listed,
                }
            )
        return {"merchants": merchants}

    def rotate_keys(self) -> dict[str, Any]:
        rotated = self.keys.rotate(self.ctx.clock.now())
        log.info("sim.wechatpay_rotated", serial=rotated["serial"])
        return rotated

    def error_body(self, status: int) -> tuple[str, bytes]:
        return "application/json", orjson.dumps({"code": "SYSTEM_ERROR", "message": "系统错误"})

    # -- HTTP plumbing ----------------------------------------------------------------------

    def app(self) -> Starlette:
        def route(path: str, handler: Handler, method: str) -> Route:
            async def endpoint(request: Request) -> Response:
                merchant, body = await self._authenticate(request)
                return await handler(request, merchant, body)

            return Route(path, endpoint, methods=[method])

        async def api_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, SimApiError)
            return _error(exc.status, exc.code, exc.message)

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            code = "NOT_FOUND" if exc.status_code == 404 else "INVALID_REQUEST"
            return _error(exc.status_code, code, str(exc.detail))

        tx = "/v3/pay/transactions"
        routes = [
            route(f"{tx}/jsapi", self._jsapi, "POST"),
            route(f"{tx}/out-trade-no/{{no}}", self._query_by_no, "GET"),
            route(f"{tx}/id/{{tid}}", self._query_by_id, "GET"),
            route(f"{tx}/out-trade-no/{{no}}/close", self._close, "POST"),
            route("/v3/refund/domestic/refunds", self._refund, "POST"),
            route("/v3/refund/domestic/refunds/{no}", self._refund_query, "GET"),
            route("/v3/certificates", self._certificates, "GET"),
            route("/v3/bill/tradebill", self._tradebill, "GET"),
            route("/v3/billdownload/file", self._download, "GET"),
        ]
        return Starlette(
            routes=routes, exception_handlers={SimApiError: api_error, HTTPException: http_error}
        )

    async def _authenticate(self, request: Request) -> tuple[MerchantKeys, bytes]:
        """The merchant named in ``Authorization``, if its signature over the raw request
        verifies with that merchant's API certificate."""
        body = await request.body()
        if len(body) > MAX_BODY:
            raise _param_error("请求体过大")
        try:
            auth = Authorization.parse(request.headers.get("authorization", ""))
        except WeChatPayError as exc:
            raise SimApiError(401, "SIGN_ERROR", f"Authorization: {exc.message}") from None
        merchant = self.keys.merchants.get(auth.mchid)
        if merchant is None or self.ctx.merchant(WX, auth.mchid) is None:
            raise SimApiError(401, "SIGN_ERROR", "商户号不存在")
        if auth.serial_no != merchant.merchant_serial:
            raise SimApiError(401, "SIGN_ERROR", "商户证书序列号不匹配")
        if abs(time.time() - int(auth.timestamp)) > REQUEST_WINDOW_S:
            raise SimApiError(401, "SIGN_ERROR", "请求时间戳已过期")
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string", b"")
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        try:
            rsa_verify(
                merchant.merchant_key, auth.message(request.method, target, body), auth.signature
            )
        except WeChatPayError:
            raise SimApiError(401, "SIGN_ERROR", "签名错误") from None
        return merchant, body

    def _signed(self, mchid: str, document: object, status: int = 200) -> Response:
        body = orjson.dumps(document) if status != 204 else b""
        signer = self.keys.signer_for(mchid, self.ctx.clock.now(), self._rng)
        headers = signed_headers(
            body, signer, timestamp=int(time.time()), nonce=random_nonce(self._rng, 32)
        )
        headers["Request-ID"] = f"{self._rng.getrandbits(96):024X}"
        if status == 204:
            del headers["Content-Type"]
        return Response(body, status, headers=headers)

    @staticmethod
    def _mchid_param(request: Request, merchant: MerchantKeys) -> None:
        if request.query_params.get("mchid") != merchant.mchid:
            raise _param_error("mchid 与请求方不一致")

    # -- payments ---------------------------------------------------------------------------

    async def _jsapi(self, request: Request, merchant: MerchantKeys, raw: bytes) -> Response:
        body = _json_object(raw)
        if body.get("mchid") != merchant.mchid:
            raise _param_error("mchid 与请求方不一致")
        if body.get("appid") != merchant.appid:
            raise SimApiError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        description = _text(body, "description")
        if len(description) > 127:
            raise _param_error("description 过长")
        _text(body, "out_trade_no", _OUT_TRADE_NO)
        if not _text(body, "notify_url").startswith(("http://", "https://")):
            raise _param_error("notify_url 必须是 http(s) 地址")
        amount, payer = body.get("amount"), body.get("payer")
        if not isinstance(amount, dict) or not isinstance(payer, dict):
            raise _param_error("amount 和 payer 必填")
        _amount(amount.get("total"), "amount.total")
        if amount.get("currency", "CNY") != "CNY":
            raise _param_error("currency 仅支持 CNY")
        _text(payer, "openid")
        if "time_expire" in body:
            try:
                from_rfc3339(str(body["time_expire"]))
            except WeChatPayError:
                raise _param_error("time_expire 格式错误") from None
        now = self.ctx.clock.now()
        trade, prepay_id, created = prepay(
            self.ctx.ledger, merchant.mchid, body, now, self._rng, self._prepay_ids
        )
        if created:
            self.after_hold(merchant.mchid, trade.out_trade_no)
        return self._signed(merchant.mchid, {"prepay_id": prepay_id})

    def _trade(self, mchid: str, out_trade_no: str) -> Trade:
        trade = self.ctx.ledger.get(WX, mchid, out_trade_no)
        if trade is None:
            raise SimApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return trade

    async def _query_by_no(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        self._mchid_param(request, merchant)
        trade = self._trade(merchant.mchid, request.path_params["no"])
        return self._signed(merchant.mchid, transaction_view(trade, merchant.appid))

    async def _query_by_id(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        self._mchid_param(request, merchant)
        trade = self.ctx.ledger.by_ref(WX, request.path_params["tid"])
        if trade is None or trade.merchant_id != merchant.mchid:
            raise SimApiError(404, "ORDER_NOT_EXIST", "订单不存在")
        return self._signed(merchant.mchid, transaction_view(trade, merchant.appid))

    async def _close(self, request: Request, merchant: MerchantKeys, raw: bytes) -> Response:
        if _json_object(raw).get("mchid") != merchant.mchid:
            raise _param_error("mchid 与请求方不一致")
        trade = self._trade(merchant.mchid, request.path_params["no"])
        close(trade, self.ctx.clock.now())
        return self._signed(merchant.mchid, None, 204)

    async def customer(self, merchant_id: str, key: str, action: str) -> dict[str, Any]:
        """pay: SUCCESS and a TRANSACTION.SUCCESS callback; decline: PAYERROR (WeChat sends no
        callback for a failed payment: the switch learns it by query); abandon: nothing, the
        order stays NOTPAY until it is closed."""
        trade = self.ctx.ledger.get(WX, merchant_id, key)
        if trade is None:
            raise CustomerError(404, "not_found", f"no WeChat order {key!r}")
        if trade.state != "NOTPAY":
            raise CustomerError(409, "wrong_state", f"order {key} is {trade.state}")
        now = self.ctx.clock.now()
        if action == "pay":
            expire = trade.params.get("time_expire")
            if expire and from_rfc3339(str(expire)).timestamp() < now:
                raise CustomerError(409, "expired", f"order {key} expired at {expire}")
            mark_paid(self.ctx.ledger, trade, now, self._rng)
            self._notify_payment(trade)
        elif action == "decline":
            trade.state = "PAYERROR"
            trade.finished_at = now
        elif action != "abandon":
            raise CustomerError(400, "bad_action", f"unknown action {action!r}")
        return trade.to_json()

    # -- refunds ----------------------------------------------------------------------------

    async def _refund(self, request: Request, merchant: MerchantKeys, raw: bytes) -> Response:
        body = _json_object(raw)
        _text(body, "out_refund_no", _OUT_REFUND_NO)
        if not body.get("transaction_id"):
            _text(body, "out_trade_no", _OUT_TRADE_NO)
        amount = body.get("amount")
        if not isinstance(amount, dict):
            raise _param_error("amount 必填")
        refund_fen = _amount(amount.get("refund"), "amount.refund")
        _amount(amount.get("total"), "amount.total")
        if amount.get("currency", "CNY") != "CNY":
            raise _param_error("currency 仅支持 CNY")
        ledger = self.ctx.ledger
        trade, existing = find_refundable(ledger, merchant.mchid, body)
        async with ledger.lock(trade):
            # WeChat checks the refundable balance in its own store: others run meanwhile
            await trio.lowlevel.checkpoint()
            _, existing = find_refundable(ledger, merchant.mchid, body)
            if existing is not None:  # the same refund key again: the same refund, or an error
                if existing.amount_fen != refund_fen:
                    raise SimApiError(400, "INVALID_REQUEST", "退款单号已存在且参数不一致")
                return self._signed(merchant.mchid, refund_view(trade, existing))
            refund = accept_refund(ledger, trade, body, self.ctx.clock.now(), self._rng)
        notify_url = str(body.get("notify_url") or trade.params.get("notify_url", ""))
        self.ctx.callbacks.spawn(self._finish_refund, trade, refund, notify_url)
        return self._signed(merchant.mchid, refund_view(trade, refund))

    async def _finish_refund(self, trade: Trade, refund: SimRefund, notify_url: str) -> None:
        await self.ctx.clock.sleep(REFUND_DELAY_S)
        refund.state = "SUCCESS"
        refund.finished_at = self.ctx.clock.now()
        if notify_url:
            resource = refund_view(trade, refund, status_field="refund_status")
            self._notify(trade.merchant_id, "REFUND.SUCCESS", resource, notify_url)

    async def _refund_query(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        found = self.ctx.ledger.refund(WX, merchant.mchid, request.path_params["no"])
        if found is None:
            raise SimApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._signed(merchant.mchid, refund_view(*found))

    # -- notifications ------------------------------------------------------------------------

    def _notify_payment(self, trade: Trade) -> None:
        appid = self.keys.merchants[trade.merchant_id].appid
        url = str(trade.params.get("notify_url", ""))
        self._notify(trade.merchant_id, "TRANSACTION.SUCCESS", transaction_view(trade, appid), url)

    def _notify(self, mchid: str, event_type: str, resource: dict[str, Any], url: str) -> None:
        """One notification: its body fixed at the event, signed afresh for every send."""
        event_id = f"EV-{self._rng.getrandbits(64):020d}"
        body = notification_body(
            event_type,
            resource,
            apiv3_key=self.keys.merchants[mchid].apiv3_key,
            event_id=event_id,
            create_time=self.ctx.clock.now(),
            nonce=random_nonce(self._rng),
        )

        def build(t: float) -> tuple[dict[str, str], bytes]:
            signer = self.keys.signer_for(mchid, t, self._rng)
            nonce = random_nonce(self._rng, 32)
            return signed_headers(body, signer, timestamp=int(time.time()), nonce=nonce), body

        delivery = Delivery(
            provider=WX,
            merchant_id=mchid,
            url=url,
            event_key=event_id,
            build=build,
            accepted=lambda status, _body: status in (200, 204),
            schedule=WECHATPAY_RETRY_S,
        )
        self.ctx.callbacks.submit(delivery)

    # -- certificates and bills -----------------------------------------------------------------

    async def _certificates(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        listed = self.keys.listed(self.ctx.clock.now())
        nonces = [random_nonce(self._rng) for _ in listed]
        body = build_certificates_response(listed, merchant.apiv3_key, nonces)
        return self._signed(merchant.mchid, orjson.loads(body))

    async def _tradebill(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        query = request.query_params
        try:
            bill_date = date.fromisoformat(query.get("bill_date", ""))
        except ValueError:
            raise _param_error("bill_date 格式应为 YYYY-MM-DD") from None
        if query.get("bill_type", "ALL") != "ALL":
            raise _param_error("bill_type 仅支持 ALL")
        tar_type = query.get("tar_type")
        if tar_type not in (None, "GZIP"):
            raise _param_error("tar_type 仅支持 GZIP")
        now = self.ctx.clock.now()
        if bill_date > datetime.fromtimestamp(now, CST).date():
            raise SimApiError(400, "STATEMENT_CREATING", "账单生成中")
        rows = bill_rows(self.ctx.ledger.trades(WX, merchant.mchid), bill_date, merchant.appid)
        if not rows:
            raise SimApiError(400, "NO_STATEMENT_EXIST", "该日期无账单")
        bill = render_tradebill(rows)
        self._downloads = {t: d for t, d in self._downloads.items() if d.expires_at > now}
        token = f"{self._rng.getrandbits(128):032x}"
        data = bill.download(gzipped=tar_type == "GZIP")
        self._downloads[token] = _Download(merchant.mchid, data, now + BILL_LINK_S)
        url = f"{self.base_url}/v3/billdownload/file?token={token}"
        document = {"hash_type": "SHA1", "hash_value": bill.sha1, "download_url": url}
        return self._signed(merchant.mchid, document)

    async def _download(self, request: Request, merchant: MerchantKeys, _: bytes) -> Response:
        """The file itself, unsigned: the ticket's hash is what vouches for it."""
        download = self._downloads.get(request.query_params.get("token", ""))
        if download is None or download.mchid != merchant.mchid:
            raise SimApiError(404, "RESOURCE_NOT_EXISTS", "下载链接不存在")
        if download.expires_at <= self.ctx.clock.now():
            raise SimApiError(400, "INVALID_REQUEST", "下载链接已过期")
        return Response(download.data, 200, media_type="application/octet-stream")


def _error(status: int, code: str, message: str) -> Response:
    body = orjson.dumps({"code": code, "message": message})
    return Response(body, status, media_type="application/json")
