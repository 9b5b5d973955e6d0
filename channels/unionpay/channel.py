"""``UnionPayChannel``: the ACP 5.1.0 cores behind ``channels.interface.Channel``.

Pre-authorization semantics (``HoldKind.PREAUTH``):

* hold — pre-authorization (02) through ``appTransReq.do``; the reply's ``tn`` goes to the
  payer's UnionPay app control (``client_data["tn"]``), the result is PENDING until the customer
  confirms; the notify or a query then says HELD;
* capture — completion (03) for the dispensed amount (≤ held). A completion *ends* the
  pre-authorization: UnionPay releases the remainder itself, so the following release of the
  rest is answered without a provider call;
* release — pre-authorization cancel (32) of the whole amount when nothing was captured;
* refund — refund (04) of the completion; query — queryTrans (00); bill — file download (76).

Every follow-up is a transaction of its own whose orderId is the switch's key for it (capture
key, release key, refund key) and which names the pre-authorization by ``origQryId``. A
``respCode`` of 00 on ``backTransReq.do`` only means *accepted*, so each money-moving request
is confirmed with a queryTrans of its orderId before the result says APPROVED.

Notifies (``verify_callback``) are verified sans-IO; a succeeded one carries
``raw["confirm_with_query"]``, and ``confirm_callback(event)`` does that queryTrans: the order
layer should call it before acting on a UnionPay success. Only ``signMethod`` 01 (RSA) is
accepted unless ``cfg.options["sign_methods"]`` lists 11/12 and the keys directory holds the
``secure_key`` they need.

A query by orderId needs the transaction's own ``txnTime``: the client remembers the txnTime
of every request the channel sent and every notify it verified, and for a key it has not seen
(after a restart) asks by the caller's ``sent_at`` or, failing that, by the queryId the caller
passes as ``provider_ref`` (see ``client``). A restarted channel also no longer knows a hold's
follow-ups, so the order layer queries each follow-up it journaled by its own key first (which
links it to its hold again, through the hold key UnionPay echoes in ``reqReserved``), then the
hold. Turning the parsed replies into results is ``responses``'s, pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path

import structlog
import trio

from channels.config import ChannelConfig
from channels.model import (
    Bill,
    CallbackEvent,
    CallbackRejected,
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
    Provider,
    RefundRequest,
    ReleaseRequest,
)
from channels.transport import Transport

from .bill import parse_file_content
from .callbacks import NotifyVerifier, ack
from .client import AcpClient
from .credentials import MerchantCredentials
from .errors import AcpError
from .messages import (
    TxnType,
    build_file_download,
    build_follow_up,
    build_hold,
    format_txn_time,
)
from .responses import (
    FOLLOW_UP_STATES,
    QueryReply,
    Verdict,
    after_duplicate_hold,
    confirmed_result,
    failure_result,
    follow_up_result,
    held_query_id,
    refund_query_result,
    result,
    status_result,
)
from .signing import SIGN_METHOD_RSA, SignPolicy

__all__ = ["UnionPayChannel"]

log = structlog.get_logger(__name__)


def _policy(cfg: ChannelConfig, creds: MerchantCredentials) -> SignPolicy:
    methods = frozenset(m.strip() for m in cfg.options.get("sign_methods", "01").split(","))
    return SignPolicy(methods | {SIGN_METHOD_RSA}, creds.secure_key)


class UnionPayChannel:
    """One UnionPay merchant (merId) through one Transport."""

    def __init__(
        self,
        cfg: ChannelConfig,
        creds: MerchantCredentials,
        transport: Transport,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if creds.mer_id != cfg.merchant_id:
            raise ValueError(f"keys for merId {creds.mer_id}, configured {cfg.merchant_id}")
        self.cfg = cfg
        policy = _policy(cfg, creds)
        self._client = AcpClient(cfg.name, creds, policy, transport, clock)
        self._notify = NotifyVerifier(cfg.name, creds.mer_id, self._client.certs, policy)
        self._memory = self._client.memory

    @classmethod
    def from_config(
        cls, cfg: ChannelConfig, *, transport: Transport | None = None
    ) -> UnionPayChannel:
        creds = MerchantCredentials.load(Path(cfg.keys_dir))
        return cls(cfg, creds, transport or Transport(cfg.base_url, cfg.limits))

    # -- CallbackVerifier ------------------------------------------------------------------

    @property
    def provider(self) -> Provider:
        return Provider.UNIONPAY

    @property
    def channel_name(self) -> str:
        return self.cfg.name

    @property
    def caps(self) -> ChannelCaps:
        return ChannelCaps(hold_kind=HoldKind.PREAUTH, partial_capture=True)

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        event = self._notify.verify(body, now)
        order_id = str(event.raw["orderId"])
        self._memory.remember(order_id, str(event.raw["txnTime"]), authoritative=True)
        hold_key = str(event.raw.get("reqReserved", ""))
        txn_type = TxnType(str(event.raw["txnType"]))
        if hold_key not in ("", order_id) and txn_type in FOLLOW_UP_STATES:
            self._memory.link(hold_key, txn_type, order_id)  # a follow-up a restart made us forget
        return event

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return ack(accepted, message)

    async def confirm_callback(self, event: CallbackEvent) -> CallbackEvent:
        """ACP's rule for notifies that say money moved: ask queryTrans before acting on them.

        Returns the event when the query agrees; raises ``CallbackRejected`` (``unconfirmed``
        while UnionPay cannot say yet — the notify will come again; ``query_mismatch``, with an
        alert, when UnionPay's own records contradict its notify)."""
        if not event.raw.get("confirm_with_query"):
            return event
        order_id = str(event.raw["orderId"])
        self._memory.remember(order_id, str(event.raw["txnTime"]), authoritative=True)
        found = await self._client.query_order(Operation.QUERY, order_id)
        if isinstance(found, ChannelResult):
            raise CallbackRejected("unconfirmed", f"queryTrans failed: {found.reason}")
        if found.verdict is not Verdict.SUCCESS:
            raise CallbackRejected("unconfirmed", f"queryTrans answered {found.resp_code}")
        if found.orig_verdict is Verdict.IN_DOUBT:
            raise CallbackRejected("unconfirmed", "UnionPay is still processing it")
        agrees = (
            found.orig_verdict is Verdict.SUCCESS
            and found.amount_fen == event.amount_fen
            and found.query_id == event.event_id
        )
        if not agrees:
            log.warning("unionpay.notify_contradicted", channel=self.cfg.name, order=order_id)
            raise CallbackRejected(
                "query_mismatch",
                f"notify says {event.status} {event.amount_fen} fen, queryTrans says "
                f"{found.orig_resp_code} {found.amount_fen} fen",
                alert=True,
            )
        return event

    # -- Channel ---------------------------------------------------------------------------

    async def hold(self, request: HoldRequest) -> ChannelResult:
        op, key = Operation.HOLD, request.key
        try:
            txn_time = format_txn_time(request.created_at)
            expires = request.expires_at
            acp = build_hold(
                TxnType.PREAUTH,
                mer_id=self._client.creds.mer_id,
                order_id=key,
                txn_time=txn_time,
                amount_fen=request.amount_fen,
                back_url=self.cfg.notify_url,
                pay_timeout=format_txn_time(expires) if expires else None,
                order_desc=request.description,
            )
        except AcpError as exc:
            return self._refused(op, key, exc)
        self._memory.remember(key, txn_time)
        reply = await self._client.exchange(op, key, acp, money=False)
        if isinstance(reply, ChannelResult):
            return reply
        if reply.verdict is Verdict.DUPLICATE:  # sent before: what became of it?
            return after_duplicate_hold(await self._hold_status(op, key, None))
        if reply.verdict is not Verdict.SUCCESS:
            return failure_result(op, key, reply)
        tn = reply.fields.get("tn", "")
        if not tn:
            return result(op, key, Outcome.TECHNICAL_FAILURE, "bad_response", "no tn")
        return ChannelResult(
            op, Outcome.PENDING, key, amount_fen=request.amount_fen, client_data={"tn": tn}
        )

    async def query(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """The payment of the hold ``key``: the pre-authorization composed with the follow-ups
        this instance knows of. ``key`` may also be a capture's, a full release's or a refund's
        own key (``sent_at`` then that request's time): the answer says what became of that
        follow-up — APPROVED with the payment state it made, PENDING while UnionPay is still on
        it, DECLINED with UnionPay's code when it failed."""
        op = Operation.QUERY
        found = await self._client.query_order(op, key, provider_ref, sent_at=sent_at)
        if isinstance(found, ChannelResult):
            return found
        txn_type, verdict = found.txn_type, found.orig_verdict  # set when UnionPay found it
        if txn_type is not None and verdict is not None and txn_type in FOLLOW_UP_STATES:
            return follow_up_result(key, found, txn_type, verdict)
        return await self._payment_status(op, key, found)

    async def capture(self, request: CaptureRequest) -> ChannelResult:
        op, key = Operation.CAPTURE, request.capture_key
        if not 0 < request.amount_fen <= request.held_fen:
            return result(op, key, Outcome.DECLINED, "exceeds_hold", "capture ≤ held, > 0")
        return await self._follow_up(
            op,
            TxnType.PREAUTH_COMPLETE,
            hold_key=request.key,
            key=key,
            amount_fen=request.amount_fen,
            created_at=request.created_at,
            orig=request.provider_ref,
        )

    async def release(self, request: ReleaseRequest) -> ChannelResult:
        op, key = Operation.RELEASE, request.release_key
        if not 0 < request.amount_fen <= request.held_fen:
            return result(op, key, Outcome.DECLINED, "bad_amount", "0 < release ≤ held")
        if request.amount_fen < request.held_fen:
            # The completion ended the pre-authorization and UnionPay released the rest.
            return ChannelResult(
                op,
                Outcome.APPROVED,
                key,
                amount_fen=request.amount_fen,
                message="released by the pre-authorization completion",
            )
        return await self._follow_up(
            op,
            TxnType.PREAUTH_CANCEL,
            hold_key=request.key,
            key=key,
            amount_fen=request.amount_fen,
            created_at=request.created_at,
            orig=request.provider_ref,
        )

    async def refund(self, request: RefundRequest) -> ChannelResult:
        orig = self._memory.captured_ref(request.key) or request.provider_ref
        if not orig:
            return result(
                Operation.REFUND,
                request.refund_key,
                Outcome.TECHNICAL_FAILURE,
                "missing_provider_ref",
                "a refund needs the completion's queryId",
            )
        return await self._follow_up(
            Operation.REFUND,
            TxnType.REFUND,
            hold_key=request.key,
            key=request.refund_key,
            amount_fen=request.amount_fen,
            created_at=request.created_at,
            orig=orig,
        )

    async def close(
        self, key: str, provider_ref: str | None = None, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        """UnionPay cannot cancel an unconfirmed order (it lapses at payTimeout); a held one is
        released with ``release`` (it needs a key of its own)."""
        status = await self._hold_status(Operation.CLOSE, key, provider_ref, sent_at)
        if status.payment is None:
            return status
        state = status.payment.state
        if state in (PaymentState.HELD, PaymentState.CAPTURED):
            return result(Operation.CLOSE, key, Outcome.DECLINED, state.value, "use release")
        return ChannelResult(
            Operation.CLOSE,
            Outcome.APPROVED,
            key,
            payment=status.payment,
            message="nothing held; an unconfirmed order lapses at payTimeout",
        )

    async def refund_query(
        self, key: str, refund_key: str, *, sent_at: datetime | None = None
    ) -> ChannelResult:
        found = await self._client.query_order(Operation.REFUND_QUERY, refund_key, sent_at=sent_at)
        if isinstance(found, ChannelResult):
            return found
        return refund_query_result(refund_key, found)

    async def bill(self, bill_date: date) -> Bill:
        acp = build_file_download(
            mer_id=self._client.creds.mer_id,
            txn_time=self._client.now_txn_time(),
            settle_date=f"{bill_date:%m%d}",
        )
        reply = await self._client.exchange(Operation.BILL, f"{bill_date:%Y%m%d}", acp, money=False)
        if isinstance(reply, ChannelResult):
            raise ChannelError(reply.reason or "bill", reply.message, sent=True)
        if reply.verdict is not Verdict.SUCCESS:
            raise ChannelError(f"resp_{reply.resp_code}", reply.resp_msg, sent=True)
        try:
            return parse_file_content(reply.fields.get("fileContent", ""), bill_date)
        except AcpError as exc:
            raise ChannelError(exc.reason, exc.message, sent=True) from exc

    async def refresh_certificates(self) -> int:
        """UnionPay's signing certificate travels with each message; what the channel holds is
        the root and intermediate, re-read here (an operator may have replaced them)."""
        creds = await trio.to_thread.run_sync(MerchantCredentials.load, Path(self.cfg.keys_dir))
        policy = _policy(self.cfg, creds)
        self._client.reload(creds, policy)
        self._notify = NotifyVerifier(self.cfg.name, creds.mer_id, self._client.certs, policy)
        return 2

    async def aclose(self) -> None:
        await self._client.transport.aclose()

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _refused(op: Operation, key: str, exc: AcpError) -> ChannelResult:
        """A request we could not even build: nothing was sent."""
        return result(op, key, Outcome.TECHNICAL_FAILURE, exc.reason, exc.message)

    async def _hold_status(
        self,
        op: Operation,
        key: str,
        provider_ref: str | None,
        sent_at: datetime | None = None,
    ) -> ChannelResult:
        hold = await self._client.query_order(op, key, provider_ref, sent_at=sent_at)
        if isinstance(hold, ChannelResult):
            return hold
        return await self._payment_status(op, key, hold)

    async def _payment_status(self, op: Operation, key: str, hold: QueryReply) -> ChannelResult:
        follow_ups = []
        for order_id in self._memory.follow_ups(key):
            found = await self._client.query_order(op, order_id)
            if isinstance(found, ChannelResult):
                return found
            follow_ups.append(found)
        return status_result(op, key, hold, follow_ups)

    async def _orig_query_id(self, op: Operation, hold_key: str) -> str | ChannelResult:
        """The pre-authorization's queryId, asked from UnionPay when the caller has none."""
        hold = await self._client.query_order(op, hold_key)
        if isinstance(hold, ChannelResult):
            return hold
        return held_query_id(op, hold_key, hold)

    async def _follow_up(
        self,
        op: Operation,
        txn_type: TxnType,
        *,
        hold_key: str,
        key: str,
        amount_fen: int,
        created_at: datetime,
        orig: str | None,
    ) -> ChannelResult:
        if not orig:
            found = await self._orig_query_id(op, hold_key)
            if isinstance(found, ChannelResult):
                return found
            orig = found
        try:
            txn_time = format_txn_time(created_at)
            acp = build_follow_up(
                txn_type,
                mer_id=self._client.creds.mer_id,
                order_id=key,
                txn_time=txn_time,
                amount_fen=amount_fen,
                orig_qry_id=orig,
                back_url=self.cfg.notify_url,
                reserved=hold_key,
            )
        except AcpError as exc:
            return self._refused(op, key, exc)
        self._memory.remember(key, txn_time)
        self._memory.link(hold_key, txn_type, key)
        reply = await self._client.exchange(op, key, acp, money=True)
        if isinstance(reply, ChannelResult):
            return reply
        if reply.verdict not in (Verdict.SUCCESS, Verdict.DUPLICATE):
            return failure_result(op, key, reply)
        return await self._confirm(op, txn_type, hold_key, key, amount_fen)

    async def _confirm(
        self, op: Operation, txn_type: TxnType, hold_key: str, key: str, amount_fen: int
    ) -> ChannelResult:
        """Accepted is not done: queryTrans says what became of the follow-up."""
        found = await self._client.query_order(op, key)
        if isinstance(found, ChannelResult):
            return found
        settled = confirmed_result(op, txn_type, key, amount_fen, found)
        done = settled.outcome is Outcome.APPROVED
        if done and txn_type is TxnType.PREAUTH_COMPLETE and found.query_id:
            self._memory.captured(hold_key, found.query_id)
        return settled
