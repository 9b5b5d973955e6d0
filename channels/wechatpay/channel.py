"""``WeChatPayChannel``: one WeChat Pay merchant account behind ``channels.interface.Channel``.

WeChat has no pre-authorization for JSAPI payments, so the hold is a *prepaid ceiling*
(``HoldKind.PREPAY_CEILING``): the switch prepays the most the pump may dispense, the customer
pays it in the mini-program (PENDING → HELD, learnt from the callback or a query), the capture
is only a check that the sale fits the ceiling, and the release is a refund of the difference
under the release's own idempotency key.

This class is the thin async shell: the sans-IO modules build, sign, verify and parse; here
each exchange becomes exactly one ``ChannelResult``. A request that may have reached WeChat
and has no trustworthy answer is UNKNOWN (a timeout, a 5xx, an answer whose signature does not
verify on a call that moves money); one that certainly did not is TECHNICAL_FAILURE. Nothing
is retried here: the order journals each attempt and decides.

Platform keys are a snapshot replaced by :meth:`refresh_certificates`, which the ChannelActor
calls on its schedule. A serial we do not know is never a reason to fetch: the answer or
callback is refused, and the scheduled refresh (which sees a new certificate a day before it
signs anything) keeps that from happening to genuine ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date, datetime

import structlog

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
    ReleaseRequest,
)
from channels.transport import Request, Response, Transport
from channels.wechatpay import requests as api
from channels.wechatpay.bill import load_tradebill
from channels.wechatpay.callbacks import CallbackPolicy, ack, verify_callback
from channels.wechatpay.certificates import PlatformKeys, parse_certificates_response
from channels.wechatpay.credentials import MerchantCredentials, load_merchant
from channels.wechatpay.errors import CredentialsError, WeChatPayError
from channels.wechatpay.responses import (
    check_signed,
    parse_error,
    parse_prepay,
    parse_tradebill_ticket,
)
from channels.wechatpay.results import (
    bad_request,
    bad_signature,
    from_api_error,
    from_transport,
    malformed,
    payment_result,
    refund_result,
)
from channels.wechatpay.signing import SCHEMA, make_nonce

__all__ = ["RELEASE_REASON", "WeChatPayChannel"]

log = structlog.get_logger(__name__)

RELEASE_REASON = "加油余额退回"  # what the customer reads on the refund of an unused ceiling


class WeChatPayChannel:
    """Implements ``channels.interface.Channel`` (and so ``CallbackVerifier``)."""

    def __init__(
        self,
        config: ChannelConfig,
        credentials: MerchantCredentials,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (credentials.mchid, credentials.appid) != (config.merchant_id, config.app_id):
            raise CredentialsError(
                "merchant_mismatch",
                f"{config.keys_dir} holds {credentials.mchid}/{credentials.appid}, "
                f"configured {config.merchant_id}/{config.app_id}",
            )
        self._config = config
        self._creds = credentials
        self._transport = transport
        self._clock = clock
        self._keys = credentials.platform
        self._policy = CallbackPolicy(
            channel=config.name,
            mchid=credentials.mchid,
            appid=credentials.appid,
            apiv3_key=credentials.apiv3_key,
            signature_type=config.options.get("signature_type", SCHEMA),
        )

    @classmethod
    def from_config(
        cls, cfg: ChannelConfig, *, transport: Transport | None = None
    ) -> WeChatPayChannel:
        return cls(
            cfg, load_merchant(cfg.keys_dir), transport or Transport(cfg.base_url, cfg.limits)
        )

    @property
    def provider(self) -> Provider:
        return Provider.WECHATPAY

    @property
    def channel_name(self) -> str:
        return self._config.name

    @property
    def caps(self) -> ChannelCaps:
        return ChannelCaps(hold_kind=HoldKind.PREPAY_CEILING, partial_capture=True)

    @property
    def platform_keys(self) -> PlatformKeys:
        return self._keys

    # -- callbacks -------------------------------------------------------------------------

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        return verify_callback(headers, body, now, keys=self._keys, policy=self._policy)

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return ack(accepted, message)

    # -- the exchange ----------------------------------------------------------------------

    async def _send(self, request: Request) -> Response:
        signed = api.sign(
            request,
            mchid=self._creds.mchid,
            serial_no=self._creds.merchant_serial,
            private_key=self._creds.private_key,
            timestamp=int(self._clock()),
            nonce=make_nonce(),
        )
        return await self._transport.send(signed)

    async def _call(self, op: Operation, key: str, request: Request) -> Response | ChannelResult:
        """A verified 2xx answer, or the ChannelResult that ends the operation."""
        try:
            response = await self._send(request)
        except ChannelError as exc:
            return from_transport(op, key, exc)
        if not 200 <= response.status < 300:
            return from_api_error(op, key, parse_error(response))
        try:
            check_signed(response, self._keys, self._clock())
        except WeChatPayError as exc:
            log.warning(
                "wechatpay.unverified_answer",
                channel=self.channel_name,
                operation=op.value,
                reason=exc.reason,
            )
            return bad_signature(op, key, exc)
        return response

    # -- payments --------------------------------------------------------------------------

    async def hold(self, request: HoldRequest) -> ChannelResult:
        op, key = Operation.HOLD, request.key
        try:
            built = api.jsapi_prepay(
                appid=self._creds.appid,
                mchid=self._creds.mchid,
                description=request.description,
                out_trade_no=key,
                notify_url=request.notify_url,
                total_fen=request.amount_fen,
                openid=request.payer_id,
                time_expire=request.expires_at,
            )
        except (WeChatPayError, ValueError) as exc:
            return bad_request(op, key, exc)
        answer = await self._call(op, key, built)
        if isinstance(answer, ChannelResult):
            return answer
        try:
            prepay_id = parse_prepay(answer.body)
        except WeChatPayError as exc:
            return malformed(op, key, exc.message)
        pay_params = api.jsapi_pay_params(
            self._creds.appid,
            prepay_id,
            self._creds.private_key,
            timestamp=int(self._clock()),
            nonce=make_nonce(),
        )
        return ChannelResult(
            op,
            Outcome.PENDING,
            key,
            amount_fen=request.amount_fen,
            payment=PaymentStatus(PaymentState.AWAITING_CUSTOMER, provider_status="NOTPAY"),
            client_data={"prepay_id": prepay_id, "pay_params": pay_params},
        )

    async def query(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """``sent_at`` is ignored: WeChat Pay finds an order by out_trade_no alone."""
        op, mchid = Operation.QUERY, self._creds.mchid
        try:
            if provider_ref:
                built = api.query_by_id(provider_ref, mchid)
            else:
                built = api.query_by_out_trade_no(key, mchid)
        except WeChatPayError as exc:
            return bad_request(op, key, exc)
        answer = await self._call(op, key, built)
        if isinstance(answer, ChannelResult):
            return answer
        return payment_result(key, answer.body, mchid=mchid, appid=self._creds.appid)

    async def capture(self, request: CaptureRequest) -> ChannelResult:
        """No provider call: the ceiling is already paid; the difference is released."""
        op = Operation.CAPTURE
        if not 0 <= request.amount_fen <= request.held_fen:
            return ChannelResult(
                op,
                Outcome.DECLINED,
                request.key,
                reason="exceeds_hold",
                message=f"capture {request.amount_fen} of a {request.held_fen} fen ceiling",
            )
        return ChannelResult(
            op,
            Outcome.APPROVED,
            request.key,
            amount_fen=request.amount_fen,
            provider_ref=request.provider_ref,
        )

    async def release(self, request: ReleaseRequest) -> ChannelResult:
        """A refund of the remainder, keyed by ``release_key``; nothing to give back is done."""
        if request.amount_fen == 0:
            return ChannelResult(Operation.RELEASE, Outcome.APPROVED, request.key, amount_fen=0)
        return await self._refund(
            Operation.RELEASE,
            request.key,
            request.release_key,
            request.amount_fen,
            request.held_fen,
            RELEASE_REASON,
            request.provider_ref,
        )

    async def refund(self, request: RefundRequest) -> ChannelResult:
        return await self._refund(
            Operation.REFUND,
            request.key,
            request.refund_key,
            request.amount_fen,
            request.total_fen,
            request.reason,
            request.provider_ref,
        )

    async def _refund(
        self,
        op: Operation,
        key: str,
        refund_key: str,
        amount_fen: int,
        total_fen: int,
        reason: str,
        provider_ref: str | None,
    ) -> ChannelResult:
        try:
            built = api.refund(
                out_trade_no=None if provider_ref else key,
                transaction_id=provider_ref,
                out_refund_no=refund_key,
                refund_fen=amount_fen,
                total_fen=total_fen,
                reason=reason,
                notify_url=self._config.notify_url,
            )
        except WeChatPayError as exc:
            return bad_request(op, key, exc)
        answer = await self._call(op, key, built)
        if isinstance(answer, ChannelResult):
            return answer
        return refund_result(op, key, refund_key, answer.body)

    async def refund_query(
        self, key: str, refund_key: str, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        op = Operation.REFUND_QUERY
        try:
            built = api.refund_query(refund_key)
        except WeChatPayError as exc:
            return bad_request(op, key, exc)
        answer = await self._call(op, key, built)
        if isinstance(answer, ChannelResult):
            return answer
        return refund_result(op, key, refund_key, answer.body)

    async def close(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """204 with no body is WeChat's success (nothing to sign); a paid order is refused."""
        op = Operation.CLOSE
        try:
            built = api.close(key, self._creds.mchid)
        except WeChatPayError as exc:
            return bad_request(op, key, exc)
        try:
            response = await self._send(built)
        except ChannelError as exc:
            return from_transport(op, key, exc)
        if response.status == 204:
            return ChannelResult(op, Outcome.APPROVED, key, provider_ref=provider_ref)
        if 200 <= response.status < 300:
            return malformed(op, key, f"close answered {response.status}")
        return from_api_error(op, key, parse_error(response))

    # -- bills and keys ----------------------------------------------------------------------

    async def bill(self, bill_date: date) -> Bill:
        """Raises ChannelError (a bill is data, not an outcome). A day without trades is an
        empty bill; a file that fails its hash or summary is an error, never a partial bill."""
        response = await self._send(api.tradebill(bill_date))
        if not 200 <= response.status < 300:
            error = parse_error(response)
            if error.code == "NO_STATEMENT_EXIST":
                return Bill(Provider.WECHATPAY, bill_date, (), None)
            raise ChannelError(error.code, error.message or f"HTTP {response.status}", sent=True)
        try:
            check_signed(response, self._keys, self._clock())
            ticket = parse_tradebill_ticket(response.body)
            download = await self._send(api.download(ticket.download_url))
            if download.status != 200:
                raise ChannelError("download_failed", f"HTTP {download.status}", sent=True)
            return load_tradebill(download.body, bill_date, sha1=ticket.hash_value)
        except WeChatPayError as exc:
            raise ChannelError(exc.reason, exc.message, sent=True) from exc

    async def refresh_certificates(self) -> int:
        """GET /v3/certificates: decrypt each certificate with the APIv3 key, admit those the
        CA issued, and accept the answer only if a key of the new set signed it."""
        response = await self._send(api.certificates())
        if not 200 <= response.status < 300:
            error = parse_error(response)
            raise ChannelError(error.code, error.message or f"HTTP {response.status}", sent=True)
        now = self._clock()
        try:
            fetched = parse_certificates_response(response.body, self._creds.apiv3_key)
            candidate = self._keys.with_certs(fetched, now)
            check_signed(response, candidate, now)
        except WeChatPayError as exc:
            raise ChannelError(exc.reason, exc.message, sent=True) from exc
        added = sorted(set(candidate.certs) - set(self._keys.certs))
        self._keys = candidate
        log.info(
            "wechatpay.certificates", channel=self.channel_name, held=len(candidate), added=added
        )
        return len(candidate)

    async def aclose(self) -> None:
        await self._transport.aclose()
