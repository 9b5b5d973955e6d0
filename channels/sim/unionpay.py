"""UnionPay online payments (ACP 5.1.0) as a local HTTP server.

Endpoints (the real gateway paths), every request form-encoded and signed by the merchant
(``certId`` = the merchant certificate's serial; the simulator verifies against the merchant
certificates registered in ``_provider/merchants``), every reply signed by UnionPay with its
current signing certificate in ``signPubKeyCert``:

* ``/gateway/api/appTransReq.do`` — consume (01) and pre-authorization (02): the reply's ``tn``
  is what the payer's app would confirm; the control API's customer does it ("pay", "decline",
  "abandon"), and a notify goes to ``backUrl``;
* ``/gateway/api/backTransReq.do`` — completion (03, ≤ the pre-authorized amount, releases the
  rest), pre-authorization cancel (32, the whole amount), completion cancel (33) and refund
  (04, never more than captured: checked and booked under the trade's ledger lock);
* ``/gateway/api/queryTrans.do`` — by orderId + its txnTime, or by queryId;
* ``/gateway/api/fileTransRequest.do`` — the clearing day's ZM file (``unionpay_bill``).

A resent orderId answers ``12`` (duplicate transaction), as UnionPay does; the merchant queries.
Notifies follow UnionPay's schedule (up to 5 sends: at once, then 1, 2, 4 and 5 minutes later)
and are re-signed per send, so a rotation between two sends shows in the second.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import structlog
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.model import Provider
from channels.unionpay import (
    APP_TRANS_PATH,
    BACK_TRANS_PATH,
    BEIJING,
    CURRENCY_CNY,
    FILE_TRANS_PATH,
    QUERY_TRANS_PATH,
    SIGN_METHOD_RSA,
    VERSION,
    AcpError,
    ProviderCredentials,
    TxnType,
    cert_id_of,
    check_order_id,
    decode_form,
    encode_form,
    generate,
    parse_amount,
    parse_txn_time,
    provider_root,
    rotate_signing,
    verify_rsa,
)

from .base import CustomerError, ProviderSim, SimContext, SimMerchant
from .callbacks import UNIONPAY_RETRY_S, Delivery
from .ledger import SimRefund, Trade
from .unionpay_bill import fee_fen, file_content, file_name, zm_lines
from .unionpay_wire import (
    RESP_MSG,
    AcpSigner,
    SimTxn,
    beijing,
    clearing_date,
    notify_fields,
    query_fields,
)

__all__ = ["UnionPaySim"]

log = structlog.get_logger(__name__)

FORM = "application/x-www-form-urlencoded;charset=UTF-8"
MAX_BODY = 64 * 1024
_BASE = ("version", "encoding", "txnType", "merId", "txnTime", "certId", "signature")
REQUIRED: dict[TxnType, tuple[str, ...]] = {
    TxnType.CONSUME: (*_BASE, "orderId", "txnAmt", "currencyCode", "backUrl"),
    TxnType.PREAUTH: (*_BASE, "orderId", "txnAmt", "currencyCode", "backUrl"),
    TxnType.PREAUTH_COMPLETE: (*_BASE, "orderId", "txnAmt", "origQryId", "backUrl"),
    TxnType.PREAUTH_CANCEL: (*_BASE, "orderId", "txnAmt", "origQryId", "backUrl"),
    TxnType.PREAUTH_COMPLETE_CANCEL: (*_BASE, "orderId", "txnAmt", "origQryId", "backUrl"),
    TxnType.REFUND: (*_BASE, "orderId", "txnAmt", "origQryId", "backUrl"),
    TxnType.QUERY: _BASE,
    TxnType.FILE_DOWNLOAD: (*_BASE, "settleDate"),
}
ENDPOINT_TYPES: dict[str, frozenset[TxnType]] = {
    APP_TRANS_PATH: frozenset({TxnType.CONSUME, TxnType.PREAUTH}),
    BACK_TRANS_PATH: frozenset(
        {
            TxnType.PREAUTH_COMPLETE,
            TxnType.PREAUTH_CANCEL,
            TxnType.PREAUTH_COMPLETE_CANCEL,
            TxnType.REFUND,
        }
    ),
    QUERY_TRANS_PATH: frozenset({TxnType.QUERY}),
    FILE_TRANS_PATH: frozenset({TxnType.FILE_DOWNLOAD}),
}
_ECHOED = ("version", "encoding", "txnType", "txnSubType", "bizType", "accessType", "merId")


class _Refusal(Exception):
    """Answer the request with this respCode (signed, HTTP 200, as UnionPay does)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.message = message or RESP_MSG.get(code, "交易失败")


Handler = Callable[[dict[str, str]], Awaitable[dict[str, str]]]


class UnionPaySim(ProviderSim):
    provider: ClassVar[Provider] = Provider.UNIONPAY

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self._creds = ProviderCredentials.load(self.ctx.keys_dir)
        self._signer = AcpSigner(self._creds.signing)
        self._txns: dict[tuple[str, str], SimTxn] = {}  # (merId, orderId)
        self._by_query_id: dict[str, SimTxn] = {}
        self._seq = 0

    # -- ProviderSim -------------------------------------------------------------------------

    @classmethod
    def ensure_keys(cls, keys_root: Path, merchants: list[SimMerchant]) -> None:
        generate(keys_root, [m.merchant_id for m in merchants], datetime.now(UTC))

    def public_material(self) -> dict[str, Any]:
        root = provider_root(self.ctx.keys_dir)
        certs = self._creds.merchant_certs
        return {
            "signing_cert_id": self._signer.signing.cert_id,
            "merchants": [
                {
                    "merchant_id": m.merchant_id,
                    "app_id": "",
                    "keys_dir": str(root / m.merchant_id),
                    "cert_id": cert_id_of(certs[m.merchant_id]) if m.merchant_id in certs else None,
                }
                for m in self.merchants
            ],
        }

    def rotate_keys(self) -> dict[str, Any]:
        old = self._signer.signing.cert_id
        now = datetime.fromtimestamp(self.ctx.clock.now(), UTC)
        self._signer = AcpSigner(rotate_signing(self.ctx.keys_dir, now))
        log.info("sim.unionpay_rotated", old=old, new=self._signer.signing.cert_id)
        return {"retired_cert_id": old, "signing_cert_id": self._signer.signing.cert_id}

    def error_body(self, status: int) -> tuple[str, bytes]:
        return "text/html", f"<html><body><h1>{status} Server Error</h1></body></html>".encode()

    def app(self) -> Starlette:
        handlers = {
            APP_TRANS_PATH: self._hold,
            BACK_TRANS_PATH: self._back,
            QUERY_TRANS_PATH: self._query,
            FILE_TRANS_PATH: self._file,
        }
        routes = [
            Route(path, self._endpoint(path, handler), methods=["POST"])
            for path, handler in handlers.items()
        ]
        return Starlette(routes=routes, max_body_size=MAX_BODY)

    async def customer(self, merchant_id: str, key: str, action: str) -> dict[str, Any]:
        txn = self._txns.get((merchant_id, key))
        if txn is None or txn.txn_type not in (TxnType.CONSUME, TxnType.PREAUTH):
            raise CustomerError(404, "not_found", f"no UnionPay order {key} of {merchant_id}")
        self._expire_if_due(txn)
        if not txn.pending:
            raise CustomerError(409, "wrong_state", f"{key} is {txn.trade.state}")
        now = self.ctx.clock.now()
        trade = txn.trade
        if action == "pay":
            self._done(txn, "00", now)
            trade.paid_fen = txn.amount_fen
            trade.paid_at = now
            if txn.txn_type is TxnType.PREAUTH:
                trade.state, trade.held_fen = "AUTHORIZED", txn.amount_fen
            else:
                trade.state, trade.captured_fen = "PAID", txn.amount_fen
                trade.fee_mfen = fee_fen(txn.amount_fen) * 1000
        elif action == "decline":
            self._done(txn, "64", now)
            trade.state, trade.finished_at = "DECLINED", now
        else:  # abandon: the payer never confirms; the order lapses without a notify
            self._done(txn, "69", now)
            trade.state, trade.finished_at = "EXPIRED", now
        if action != "abandon":
            self._notify(txn)
        return {"orderId": key, "queryId": txn.query_id, "respCode": txn.resp_code}

    # -- request plumbing --------------------------------------------------------------------

    def _endpoint(self, path: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            fields: dict[str, str] = {}
            try:
                fields = decode_form(body)
                self._authenticate(fields, ENDPOINT_TYPES[path])
                reply = await handler(fields)
            except AcpError as exc:
                reply = self._refusal(fields, _Refusal("10", exc.message))
            except _Refusal as refusal:
                reply = self._refusal(fields, refusal)
            return Response(encode_form(self._signer.sign(reply)), 200, media_type=FORM)

        return endpoint

    def _refusal(self, fields: dict[str, str], refusal: _Refusal) -> dict[str, str]:
        log.info("sim.unionpay_refused", code=refusal.code, message=refusal.message)
        return self._echo(fields, refusal.code, refusal.message)

    @staticmethod
    def _echo(fields: dict[str, str], code: str, message: str = "") -> dict[str, str]:
        out = {k: fields[k] for k in _ECHOED if k in fields}
        for name in ("orderId", "txnTime"):
            if name in fields:
                out[name] = fields[name]
        out.update(
            version=VERSION,
            encoding="UTF-8",
            respCode=code,
            respMsg=message or RESP_MSG.get(code, "交易失败"),
        )
        return out

    def _authenticate(self, fields: dict[str, str], allowed: frozenset[TxnType]) -> None:
        """Version, method, merchant, certificate, signature and required fields."""
        if fields.get("version") != VERSION:
            raise _Refusal("10", f"version must be {VERSION}")
        if fields.get("signMethod") != SIGN_METHOD_RSA:
            raise _Refusal("11", "signMethod must be 01")
        mer_id = fields.get("merId", "")
        cert = self._creds.merchant_certs.get(mer_id)
        if self.ctx.merchant(Provider.UNIONPAY, mer_id) is None or cert is None:
            raise _Refusal("31")
        if fields.get("certId") != cert_id_of(cert):
            raise _Refusal("11", "certId is not the merchant's signing certificate")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise _Refusal("11", "the registered certificate is not RSA")
        try:
            verify_rsa(fields, key)
        except AcpError as exc:
            raise _Refusal("11", exc.message) from exc
        try:
            txn_type = TxnType(fields.get("txnType", ""))
        except ValueError:
            raise _Refusal("32", f"txnType {fields.get('txnType')!r}") from None
        if txn_type not in allowed:
            raise _Refusal("32", f"txnType {txn_type.value} is not served here")
        missing = [name for name in REQUIRED[txn_type] if not fields.get(name)]
        if missing:
            raise _Refusal("13", f"missing {', '.join(missing)}")
        parse_txn_time(fields["txnTime"])

    def _new_id(self) -> str:
        """21 digits, UnionPay-like: the Beijing time, then a sequence and random digits."""
        while True:
            self._seq += 1
            stamp = f"{beijing(self.ctx.clock.now()):%y%m%d%H%M%S}"
            candidate = f"{stamp}{self._seq % 10000:04d}{self.ctx.rng.randrange(10**5):05d}"
            if candidate not in self._by_query_id:
                return candidate

    def _done(self, txn: SimTxn, code: str, now: float) -> None:
        txn.resp_code = code
        txn.done_at = now
        txn.trace_no = f"{self.ctx.rng.randrange(10**6):06d}"

    def _expire_if_due(self, txn: SimTxn) -> None:
        if txn.pending and txn.pay_timeout:
            due = parse_txn_time(txn.pay_timeout).timestamp()
            if self.ctx.clock.now() > due:
                self._done(txn, "69", due)
                txn.trade.state, txn.trade.finished_at = "EXPIRED", due

    def _notify(self, txn: SimTxn) -> None:
        def build(t: float) -> tuple[dict[str, str], bytes]:
            return {"content-type": FORM}, encode_form(self._signer.sign(notify_fields(txn)))

        self.ctx.callbacks.submit(
            Delivery(
                provider=Provider.UNIONPAY,
                merchant_id=txn.mer_id,
                url=txn.back_url,
                event_key=txn.query_id,
                build=build,
                accepted=lambda status, body: status == 200,
                schedule=UNIONPAY_RETRY_S,
            )
        )

    def _register(self, txn: SimTxn) -> SimTxn:
        self._txns[(txn.mer_id, txn.order_id)] = txn
        self._by_query_id[txn.query_id] = txn
        return txn

    def _check_new(self, fields: dict[str, str]) -> tuple[str, str, int]:
        mer_id = fields["merId"]
        try:
            order_id = check_order_id(fields["orderId"])
            amount = parse_amount(fields["txnAmt"])
        except AcpError as exc:
            raise _Refusal("10", exc.message) from exc
        if amount <= 0:
            raise _Refusal("10", "txnAmt must be positive")
        if fields.get("currencyCode", CURRENCY_CNY) != CURRENCY_CNY:
            raise _Refusal("10", "currencyCode must be 156")
        if (mer_id, order_id) in self._txns:
            raise _Refusal("12")
        return mer_id, order_id, amount

    @staticmethod
    def _params(fields: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in fields.items() if k != "signature"}

    # -- transactions ------------------------------------------------------------------------

    async def _hold(self, fields: dict[str, str]) -> dict[str, str]:
        mer_id, order_id, amount = self._check_new(fields)
        txn_type = TxnType(fields["txnType"])
        if fields.get("payTimeout"):
            parse_txn_time(fields["payTimeout"])  # AcpError: answered "10"
        now = self.ctx.clock.now()
        query_id = self._new_id()
        trade = Trade(
            provider=Provider.UNIONPAY,
            merchant_id=mer_id,
            out_trade_no=order_id,
            provider_ref=query_id,
            kind="preauth" if txn_type is TxnType.PREAUTH else "payment",
            amount_fen=amount,
            state="WAIT_CUSTOMER",
            params=self._params(fields),
            created_at=now,
        )
        self.ctx.ledger.add(trade)
        txn = SimTxn(
            mer_id=mer_id,
            order_id=order_id,
            txn_type=txn_type,
            txn_time=fields["txnTime"],
            amount_fen=amount,
            query_id=query_id,
            trade=trade,
            back_url=fields["backUrl"],
            created_at=now,
            pay_timeout=fields.get("payTimeout", ""),
            params=trade.params,
        )
        self._register(txn)
        self.after_hold(mer_id, order_id)
        return {**self._echo(fields, "00"), "tn": self._new_id()}

    async def _back(self, fields: dict[str, str]) -> dict[str, str]:
        mer_id, order_id, amount = self._check_new(fields)
        txn_type = TxnType(fields["txnType"])
        orig = self._by_query_id.get(fields["origQryId"])
        if orig is None or orig.mer_id != mer_id:
            raise _Refusal("35")
        trade = orig.trade
        async with self.ctx.ledger.lock(trade):
            await trio.lowlevel.checkpoint()  # a concurrent request may run here: hence the lock
            self._check_follow_up(txn_type, orig, amount)
            now = self.ctx.clock.now()
            txn = self._register(
                SimTxn(
                    mer_id=mer_id,
                    order_id=order_id,
                    txn_type=txn_type,
                    txn_time=fields["txnTime"],
                    amount_fen=amount,
                    query_id=self._new_id(),
                    trade=trade,
                    back_url=fields["backUrl"],
                    created_at=now,
                    orig=orig,
                    reserved=fields.get("reqReserved", ""),
                    params=self._params(fields),
                )
            )
            self._done(txn, "00", now)
            self._book(txn, now)
        self._notify(txn)
        return {**self._echo(fields, "00"), "queryId": txn.query_id}

    @staticmethod
    def _check_follow_up(txn_type: TxnType, orig: SimTxn, amount: int) -> None:
        """Whether ``orig`` can take this follow-up now (under the trade's lock)."""
        trade = orig.trade
        if txn_type in (TxnType.PREAUTH_COMPLETE, TxnType.PREAUTH_CANCEL):
            if orig.txn_type is not TxnType.PREAUTH or trade.state != "AUTHORIZED":
                raise _Refusal("35")
            if txn_type is TxnType.PREAUTH_COMPLETE and amount > trade.held_fen:
                raise _Refusal("33", "完成金额超过预授权金额")
            if txn_type is TxnType.PREAUTH_CANCEL and amount != trade.held_fen:
                raise _Refusal("36", "撤销金额须等于预授权金额")
            return
        if orig.txn_type not in (TxnType.CONSUME, TxnType.PREAUTH_COMPLETE):
            raise _Refusal("35")
        if orig.resp_code != "00":
            raise _Refusal("35")
        if txn_type is TxnType.PREAUTH_COMPLETE_CANCEL and (
            orig.txn_type is not TxnType.PREAUTH_COMPLETE
            or trade.refunded_fen
            or amount != orig.amount_fen
        ):
            raise _Refusal("36")
        if trade.refunded_fen + amount > trade.captured_fen:
            raise _Refusal("33", "退货金额超过原交易可退金额")

    def _book(self, txn: SimTxn, now: float) -> None:
        """The follow-up's effect on the trade in the ledger."""
        trade = txn.trade
        if txn.txn_type is TxnType.PREAUTH_COMPLETE:
            trade.captured_fen = txn.amount_fen
            trade.released_fen = trade.held_fen - txn.amount_fen
            trade.fee_mfen = fee_fen(txn.amount_fen) * 1000
            trade.state, trade.finished_at = "COMPLETED", now
        elif txn.txn_type is TxnType.PREAUTH_CANCEL:
            trade.released_fen = trade.held_fen
            trade.state, trade.finished_at = "CANCELLED", now
        else:  # refund or completion cancel: money back to the payer
            refund = SimRefund(
                out_refund_no=txn.order_id,
                provider_ref=txn.query_id,
                amount_fen=txn.amount_fen,
                state="SUCCESS",
                accepted_at=now,
                fee_mfen=fee_fen(txn.amount_fen) * 1000,
                finished_at=now,
            )
            self.ctx.ledger.add_refund(trade, refund)
            trade.refunded_fen += txn.amount_fen
            if trade.refunded_fen == trade.captured_fen:
                trade.state = "REFUNDED"

    async def _query(self, fields: dict[str, str]) -> dict[str, str]:
        order_id = fields.get("orderId")
        if order_id:
            txn = self._txns.get((fields["merId"], order_id))
            if txn is not None and txn.txn_time != fields["txnTime"]:
                txn = None  # orderId and txnTime identify a transaction together
        else:
            txn = self._by_query_id.get(fields.get("queryId", ""))
            if txn is not None and txn.mer_id != fields["merId"]:
                txn = None
        if txn is None:
            raise _Refusal("34")
        self._expire_if_due(txn)
        return query_fields(txn)

    async def _file(self, fields: dict[str, str]) -> dict[str, str]:
        day = self._settle_day(fields["settleDate"])
        now = self.ctx.clock.now()
        closes = datetime.combine(day, datetime.min.time(), BEIJING) + timedelta(hours=23)
        if now < closes.timestamp():
            raise _Refusal("98", f"the file of clearing day {day} is not ready")
        mer_id = fields["merId"]
        txns = [t for t in self._txns.values() if t.mer_id == mer_id]
        lines = zm_lines(txns, day)
        data = b"".join(line + b"\r\n" for line in lines)
        name = file_name(mer_id, day)
        return {
            **self._echo(fields, "00"),
            "settleDate": fields["settleDate"],
            "fileType": fields.get("fileType", "00"),
            "fileName": f"{name}.zip",
            "fileContent": file_content({name: data}),
        }

    def _settle_day(self, mmdd: str) -> date:
        """The most recent clearing day with this MMDD, up to the current one."""
        today = clearing_date(self.ctx.clock.now())
        for year in (today.year, today.year - 1):
            try:
                day = date(year, int(mmdd[:2]), int(mmdd[2:]))
            except ValueError:
                continue
            if day <= today:
                return day
        raise _Refusal("10", f"settleDate {mmdd!r} is not MMDD")
