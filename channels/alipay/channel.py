"""``AlipayChannel``: one Alipay app as a ``channels.interface.Channel``, pre-authorization style.

Pay-at-pump on Alipay is a fund authorization (``HoldKind.PREAUTH``):

* hold    — ``alipay.fund.auth.order.app.freeze`` (out_order_no = out_request_no = the hold key)
  → PENDING until the payer confirms in the Alipay app (order INIT), then AUTHORIZED = HELD,
  announced by a ``fund_auth_freeze`` notify;
* capture — ``alipay.trade.pay`` with the auth_no and ``auth_confirm_mode=COMPLETE``: the sale is
  paid from the frozen funds and the rest is unfrozen in the same step. The trade's out_trade_no
  is the hold key (a hold is captured once; ``trade.pay`` is idempotent by out_trade_no), so the
  trade notify and the refunds find the order by the same key;
* release — ``alipay.fund.auth.order.unfreeze`` keyed by the release key;
* close   — ``alipay.fund.auth.operation.cancel`` of the freeze (needs no new key);
* query   — ``alipay.fund.auth.operation.detail.query``, plus ``alipay.trade.query`` once captured;
* refund  — ``alipay.trade.refund`` keyed by out_request_no = the refund key.

The adapter never retries: every call is one exchange, classified exactly. A failure before the
request can have left is TECHNICAL_FAILURE; after, UNKNOWN. An answer that is not Alipay's
(unsigned, badly signed, unreadable) is TECHNICAL_FAILURE for reads and UNKNOWN for the calls
that move money, since the gateway may have done them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import structlog

from channels.alipay.bill import no_bill, parse_bill_zip
from channels.alipay.callbacks import ack_reply, verify_notify
from channels.alipay.credentials import AlipayCredentials, load_credentials
from channels.alipay.errors import AlipayError, CredentialsError, RequestError, ResponseError
from channels.alipay.forms import encode_form
from channels.alipay.requests import (
    CHINA,
    GATEWAY_PATH,
    BizCall,
    bill_download_url,
    fund_detail_query,
    fund_freeze,
    fund_operation_cancel,
    fund_unfreeze,
    sign_request,
    trade_pay_capture,
    trade_query,
    trade_refund,
    trade_refund_query,
)
from channels.alipay.responses import (
    GatewayReply,
    bill_url_of,
    capture_info,
    classify,
    combine_preauth,
    freeze_info,
    freeze_status,
    is_not_found,
    read_reply,
    refund_info,
    refund_query_info,
    trade_status,
    unfreeze_info,
)
from channels.config import ChannelConfig
from channels.model import (
    Bill,
    CallbackEvent,
    CaptureRequest,
    ChannelCaps,
    ChannelError,
    ChannelResult,
    HoldKind,
    HoldRequest,
    HttpReply,
    Operation,
    Outcome,
    PaymentState,
    PaymentStatus,
    Provider,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from channels.transport import Request, Transport

__all__ = ["AlipayChannel"]

log = structlog.get_logger(__name__)

T = TypeVar("T")
BILL_NOT_EXIST = "isp.bill_not_exist"
_FORM = "application/x-www-form-urlencoded;charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Exchange:
    fields: Mapping[str, str]
    reply: GatewayReply


class AlipayChannel:
    """One configured Alipay app. Construct with :meth:`from_config`."""

    def __init__(
        self,
        config: ChannelConfig,
        credentials: AlipayCredentials,
        transport: Transport,
        *,
        owns_transport: bool = True,
    ) -> None:
        if credentials.app_id != config.app_id or credentials.seller_id != config.merchant_id:
            raise CredentialsError(
                "credentials_mismatch",
                f"{config.keys_dir} holds app {credentials.app_id} / seller "
                f"{credentials.seller_id}, configured {config.app_id} / {config.merchant_id}",
            )
        self._config = config
        self._creds = credentials
        self._transport = transport
        self._owns_transport = owns_transport
        self._caps = ChannelCaps(hold_kind=HoldKind.PREAUTH)

    @classmethod
    def from_config(
        cls, cfg: ChannelConfig, *, transport: Transport | None = None
    ) -> AlipayChannel:
        """Load the merchant directory ``cfg.keys_dir``; raises ``CredentialsError``."""
        credentials = load_credentials(cfg.keys_dir)
        own = transport is None
        return cls(
            cfg,
            credentials,
            transport or Transport(cfg.base_url, cfg.limits),
            owns_transport=own,
        )

    # -- identity ---------------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        return Provider.ALIPAY

    @property
    def channel_name(self) -> str:
        return self._config.name

    @property
    def caps(self) -> ChannelCaps:
        return self._caps

    # -- callbacks --------------------------------------------------------------------------

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        """``now`` is unused: Alipay notifies have no freshness window (see callbacks.py)."""
        return verify_notify(
            body,
            alipay_public_key=self._creds.alipay_public_key,
            app_id=self._creds.app_id,
            seller_id=self._creds.seller_id,
            channel=self._config.name,
            content_type=headers.get("content-type", ""),
        )

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return ack_reply(accepted)

    # -- operations -------------------------------------------------------------------------

    async def hold(self, request: HoldRequest) -> ChannelResult:
        op, key = Operation.HOLD, request.key
        timeout = None
        expires, created = request.expires_at, request.created_at
        if expires is not None and (expires.tzinfo is None) == (created.tzinfo is None):
            timeout = int((expires - created).total_seconds() // 60)
        got = await self._exchange(
            op,
            key,
            lambda: fund_freeze(
                key,
                key,
                request.amount_fen,
                request.description,
                payee_user_id=self._creds.seller_id,
                payer_user_id=request.payer_id,
                timeout_minutes=timeout,
            ),
            request.created_at,
            moves_money=True,
            notify_url=request.notify_url,
        )
        if isinstance(got, ChannelResult):
            return got
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        info = _read(freeze_info, got.reply)
        if isinstance(info, str):
            return _result(op, key, Outcome.UNKNOWN, reason=info)
        if info.amount_fen != request.amount_fen:
            return _result(op, key, Outcome.UNKNOWN, reason="amount_mismatch")
        if info.status == "CLOSED":  # a replay after the payer refused or the order timed out
            closed = PaymentStatus(PaymentState.CLOSED, provider_ref=info.auth_no)
            return _result(op, key, Outcome.DECLINED, reason="closed", payment=closed)
        held = info.status == "SUCCESS"
        payment = PaymentStatus(
            state=PaymentState.HELD if held else PaymentState.AWAITING_CUSTOMER,
            held_fen=info.amount_fen if held else 0,
            provider_ref=info.auth_no,
            provider_status="AUTHORIZED" if held else "INIT",
        )
        return _result(
            op,
            key,
            Outcome.APPROVED if held else Outcome.PENDING,
            amount_fen=info.amount_fen,
            provider_ref=info.auth_no,
            payment=payment,
            client_data={
                "auth_no": info.auth_no,
                "operation_id": info.operation_id,
                "order_str": encode_form(got.fields).decode("ascii"),
            },
        )

    async def query(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """``sent_at`` is ignored: Alipay finds an order by its out_order_no alone."""
        op = Operation.QUERY
        got = await self._exchange(
            op,
            key,
            lambda: fund_detail_query(
                auth_no=provider_ref or "", out_order_no=key, out_request_no=key
            ),
            _now(),
        )
        if isinstance(got, ChannelResult):
            return got
        if is_not_found(got.reply):
            return _result(op, key, Outcome.APPROVED, payment=PaymentStatus(PaymentState.NOT_FOUND))
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        hold = _read(freeze_status, got.reply)
        if isinstance(hold, str):
            return _result(op, key, Outcome.TECHNICAL_FAILURE, reason=hold)
        status = hold
        if hold.state is PaymentState.CAPTURED or hold.provider_status == "FINISH":
            status = combine_preauth(hold, await self._captured_trade(key))
        return _result(
            op,
            key,
            Outcome.APPROVED,
            amount_fen=status.captured_fen or status.held_fen,
            provider_ref=status.provider_ref,
            payment=status,
        )

    async def capture(self, request: CaptureRequest) -> ChannelResult:
        op, key = Operation.CAPTURE, request.key
        found = await self._hold_auth_no(op, request)
        if isinstance(found, ChannelResult):
            return found
        auth_no = found
        subject = f"{self._config.options.get('subject', '加油')} {request.capture_key}"
        got = await self._exchange(
            op,
            key,
            lambda: trade_pay_capture(
                key, auth_no, request.amount_fen, subject, seller_id=self._creds.seller_id
            ),
            request.created_at,
            moves_money=True,
        )
        if isinstance(got, ChannelResult):
            return got
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        info = _read(capture_info, got.reply)
        if isinstance(info, str):
            return _result(op, key, Outcome.UNKNOWN, reason=info)
        if info.amount_fen != request.amount_fen:
            return _result(op, key, Outcome.UNKNOWN, reason="amount_mismatch")
        return _result(
            op,
            key,
            Outcome.APPROVED,
            amount_fen=info.amount_fen,
            provider_ref=info.trade_no,
            client_data={"auth_no": auth_no, "trade_no": info.trade_no},
        )

    async def release(self, request: ReleaseRequest) -> ChannelResult:
        op, key = Operation.RELEASE, request.key
        if 0 < request.amount_fen < request.held_fen:
            # The capture (trade.pay, auth_confirm_mode COMPLETE) ended the freeze and Alipay
            # unfroze the rest itself; asking again is refused (ORDER_STATUS_NOT_SUPPORT).
            return _result(
                op,
                key,
                Outcome.APPROVED,
                amount_fen=request.amount_fen,
                provider_ref=request.provider_ref,
                reason="released_by_capture",
            )
        found = await self._hold_auth_no(op, request)
        if isinstance(found, ChannelResult):
            return found
        auth_no = found
        got = await self._exchange(
            op,
            key,
            lambda: fund_unfreeze(auth_no, request.release_key, request.amount_fen, "释放预授权"),
            request.created_at,
            moves_money=True,
        )
        if isinstance(got, ChannelResult):
            return got
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        info = _read(unfreeze_info, got.reply)
        if isinstance(info, str):
            return _result(op, key, Outcome.UNKNOWN, reason=info)
        done = info.status == "SUCCESS"
        return _result(
            op,
            key,
            Outcome.APPROVED if done else Outcome.PENDING,
            amount_fen=info.amount_fen,
            provider_ref=auth_no,
            reason=None if done else info.status,
        )

    async def close(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        op = Operation.CLOSE
        got = await self._exchange(
            op, key, lambda: fund_operation_cancel(key, key, "订单关闭"), _now(), moves_money=True
        )
        if isinstance(got, ChannelResult):
            return got
        closed = PaymentStatus(PaymentState.CLOSED, provider_ref=provider_ref)
        if is_not_found(got.reply):
            return _result(op, key, Outcome.APPROVED, payment=PaymentStatus(PaymentState.NOT_FOUND))
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        action = str(got.reply.body.get("action", ""))
        return _result(op, key, Outcome.APPROVED, payment=closed, client_data={"action": action})

    async def refund(self, request: RefundRequest) -> ChannelResult:
        op, key = Operation.REFUND, request.key
        got = await self._exchange(
            op,
            key,
            lambda: trade_refund(key, request.amount_fen, request.refund_key, request.reason),
            request.created_at,
            moves_money=True,
        )
        if isinstance(got, ChannelResult):
            return got
        verdict = classify(got.reply)
        if verdict.outcome is not Outcome.APPROVED:
            refund = RefundState.FAILED if verdict.outcome is Outcome.DECLINED else None
            return _result(
                op,
                key,
                verdict.outcome,
                reason=verdict.reason,
                message=verdict.message,
                refund=refund,
            )
        info = _read(refund_info, got.reply)
        if isinstance(info, str):
            return _result(op, key, Outcome.UNKNOWN, reason=info)
        if not info.fund_change:
            # Alipay's rule: fund_change=N (a replay, or money not moved yet) is confirmed only
            # by the refund query.
            return _result(
                op, key, Outcome.PENDING, reason="fund_change_n", refund=RefundState.PROCESSING
            )
        return _result(
            op,
            key,
            Outcome.APPROVED,
            amount_fen=request.amount_fen,
            provider_ref=info.trade_no or None,
            refund=RefundState.SUCCESS,
            client_data={"refund_fee_fen": info.refund_fee_fen},
        )

    async def refund_query(
        self, key: str, refund_key: str, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        op = Operation.REFUND_QUERY
        got = await self._exchange(op, key, lambda: trade_refund_query(key, refund_key), _now())
        if isinstance(got, ChannelResult):
            return got
        if is_not_found(got.reply):
            return _result(op, key, Outcome.APPROVED, refund=RefundState.NOT_FOUND)
        if (refused := _refused(op, key, got.reply)) is not None:
            return refused
        info = _read(refund_query_info, got.reply)
        if isinstance(info, str):
            return _result(op, key, Outcome.TECHNICAL_FAILURE, reason=info)
        return _result(op, key, Outcome.APPROVED, amount_fen=info.amount_fen, refund=info.state)

    async def bill(self, bill_date: date) -> Bill:
        """The day's trade bill; ``no_bill`` when Alipay has none. Raises ``ChannelError``."""
        got = await self._exchange(
            Operation.BILL, bill_date.isoformat(), lambda: bill_download_url(bill_date), _now()
        )
        if isinstance(got, ChannelResult):
            sent = got.outcome is Outcome.UNKNOWN
            raise ChannelError(got.reason or "bill", got.message, sent=sent)
        if got.reply.code == "40004" and got.reply.sub_code == BILL_NOT_EXIST:
            return no_bill(bill_date)
        verdict = classify(got.reply)
        if verdict.outcome is not Outcome.APPROVED:
            raise ChannelError(verdict.reason or "bill", verdict.message, sent=True)
        try:
            url = bill_url_of(got.reply.body)
        except ResponseError as exc:
            raise ChannelError(exc.reason, exc.message, sent=True) from exc
        data = await self._transport.fetch_url(url)
        try:
            bill = parse_bill_zip(data, bill_date)
        except AlipayError as exc:
            raise ChannelError(exc.reason, exc.message, sent=True) from exc
        strangers = {row.merchant_id for row in bill.rows} - {self._creds.seller_id}
        if strangers:
            raise ChannelError("wrong_merchant", f"bill rows of {sorted(strangers)}", sent=True)
        return bill

    async def refresh_certificates(self) -> int:
        """Public key mode has no certificate download: re-read Alipay's public key from the
        keys directory, where an operator puts a changed key."""
        try:
            fresh = load_credentials(self._config.keys_dir)
        except CredentialsError as exc:
            raise ChannelError(exc.reason, exc.message, sent=False) from exc
        if (fresh.app_id, fresh.seller_id) != (self._creds.app_id, self._creds.seller_id):
            raise ChannelError("credentials_mismatch", "the keys directory changed app", sent=False)
        self._creds = fresh
        return 1

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()

    # -- plumbing ---------------------------------------------------------------------------

    async def _exchange(
        self,
        op: Operation,
        key: str,
        build: Callable[[], BizCall],
        timestamp: datetime,
        *,
        moves_money: bool = False,
        notify_url: str = "",
    ) -> _Exchange | ChannelResult:
        """Build, sign, send and verify one gateway call, or the result that ends it.
        ``notify_url``: the request's own, else the channel's."""
        try:
            call = build()
        except RequestError as exc:
            return _result(
                op, key, Outcome.TECHNICAL_FAILURE, reason=exc.reason, message=exc.message
            )
        fields = sign_request(
            call,
            app_id=self._creds.app_id,
            key=self._creds.app_private_key,
            timestamp=timestamp,
            notify_url=notify_url or self._config.notify_url,
        )
        request = Request("POST", GATEWAY_PATH, {"content-type": _FORM}, encode_form(fields))
        doubt = Outcome.UNKNOWN if moves_money else Outcome.TECHNICAL_FAILURE
        try:
            response = await self._transport.send(request)
        except ChannelError as exc:
            outcome = Outcome.UNKNOWN if exc.sent else Outcome.TECHNICAL_FAILURE
            log.info("alipay.exchange_failed", method=call.method, key=key, reason=exc.reason)
            return _result(op, key, outcome, reason=exc.reason, message=exc.message)
        if response.status >= 500:
            return _result(op, key, Outcome.UNKNOWN, reason=f"http_{response.status}")
        if response.status != 200:
            return _result(op, key, doubt, reason=f"http_{response.status}")
        try:
            reply = read_reply(response.body, call.method, self._creds.alipay_public_key)
        except ResponseError as exc:
            log.warning("alipay.bad_response", method=call.method, key=key, reason=exc.reason)
            return _result(op, key, doubt, reason=exc.reason, message=exc.message)
        log.debug("alipay.reply", method=call.method, key=key, code=reply.code, sub=reply.sub_code)
        return _Exchange(fields, reply)

    async def _hold_auth_no(
        self, op: Operation, request: CaptureRequest | ReleaseRequest
    ) -> str | ChannelResult:
        """The freeze's auth_no for a capture or release of it, after the amount check."""
        if not 0 < request.amount_fen <= request.held_fen:
            return _result(op, request.key, Outcome.TECHNICAL_FAILURE, reason="bad_amount")
        found = request.provider_ref or await self._auth_no(request.key)
        return _retag(found, op) if isinstance(found, ChannelResult) else found

    async def _auth_no(self, key: str) -> str | ChannelResult:
        """The hold's auth_no when the caller did not keep it: from the detail query."""
        result = await self.query(key)
        if result.outcome is not Outcome.APPROVED:
            return result
        if result.payment is None or not result.payment.provider_ref:
            return _result(Operation.QUERY, key, Outcome.DECLINED, reason="hold_not_found")
        return result.payment.provider_ref

    async def _captured_trade(self, key: str) -> PaymentStatus | None:
        got = await self._exchange(Operation.QUERY, key, lambda: trade_query(key), _now())
        if isinstance(got, ChannelResult) or classify(got.reply).outcome is not Outcome.APPROVED:
            return None
        status = _read(trade_status, got.reply)
        return None if isinstance(status, str) else status


def _refused(op: Operation, key: str, reply: GatewayReply) -> ChannelResult | None:
    """The result for a reply that is not code 10000, or None when it is."""
    verdict = classify(reply)
    if verdict.outcome is Outcome.APPROVED:
        return None
    return _result(op, key, verdict.outcome, reason=verdict.reason, message=verdict.message)


def _read(reader: Callable[[Mapping[str, Any]], T], reply: GatewayReply) -> T | str:
    """``reader(reply.body)``, or the reason code when the body does not hold what it should."""
    try:
        return reader(reply.body)
    except ResponseError as exc:
        return exc.reason


def _result(
    op: Operation,
    key: str,
    outcome: Outcome,
    *,
    amount_fen: int | None = None,
    provider_ref: str | None = None,
    reason: str | None = None,
    message: str = "",
    payment: PaymentStatus | None = None,
    refund: RefundState | None = None,
    client_data: Mapping[str, Any] | None = None,
) -> ChannelResult:
    return ChannelResult(
        operation=op,
        outcome=outcome,
        key=key,
        amount_fen=amount_fen,
        provider_ref=provider_ref,
        reason=reason,
        message=message,
        payment=payment,
        refund=refund,
        client_data=dict(client_data or {}),
    )


def _retag(result: ChannelResult, op: Operation) -> ChannelResult:
    """A failed auth_no lookup, reported as the operation that needed it."""
    return _result(op, result.key, result.outcome, reason=result.reason, message=result.message)


def _now() -> datetime:
    return datetime.now(CHINA)
