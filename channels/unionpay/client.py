"""One signed exchange with UnionPay: sign, send through the Transport, verify, classify.

The channel's operations are built from two calls: :meth:`AcpClient.exchange` (any request)
and :meth:`AcpClient.query_order` (queryTrans of one orderId). Failures come back as
``ChannelResult`` values rather than exceptions, already classified the way the router needs:
a transport failure is UNKNOWN when the request may have been sent and TECHNICAL_FAILURE when
it certainly was not; a 5xx is UNKNOWN; a reply that is not form-encoded, not signed by a
certificate chaining to UnionPay's root, or about another merchant or order cannot be trusted —
TECHNICAL_FAILURE (``bad_response_signature``), or UNKNOWN when the request may have moved money.

ACP identifies a transaction by orderId *and* txnTime, so a query needs both. The client asks
by the txnTime its :class:`~channels.unionpay.memory.OrderMemory` holds (what this instance
sent, or what UnionPay's notify said). For an order it has not seen (after a restart) the order
layer passes ``sent_at``, the journaled ``created_at`` of the request that created the key: the
client formats it exactly as that request formatted its txnTime (Beijing time, to the second).
Failing that it asks by UnionPay's queryId when the caller has one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from channels.model import ChannelError, ChannelResult, Operation, Outcome
from channels.transport import Request, Transport

from .credentials import MerchantCredentials
from .errors import AcpError
from .memory import OrderMemory
from .messages import (
    AcpRequest,
    TxnType,
    build_query,
    decode_form,
    encode_form,
    format_txn_time,
)
from .pki import SignCertVerifier
from .responses import (
    FOLLOW_UP_STATES,
    AcpReply,
    QueryReply,
    Verdict,
    parse_query_reply,
    parse_reply,
    result,
)
from .signing import SignPolicy, signed, verify_message

__all__ = ["FORM", "AcpClient"]

log = structlog.get_logger(__name__)

FORM = "application/x-www-form-urlencoded;charset=UTF-8"


class AcpClient:
    def __init__(
        self,
        channel_name: str,
        creds: MerchantCredentials,
        policy: SignPolicy,
        transport: Transport,
        clock: Callable[[], float],
    ) -> None:
        self.channel_name = channel_name
        self.transport = transport
        self.clock = clock
        self.creds = creds
        self.policy = policy
        self.certs = SignCertVerifier(creds.anchors)
        self.memory = OrderMemory()

    def reload(self, creds: MerchantCredentials, policy: SignPolicy) -> None:
        self.creds, self.policy = creds, policy
        self.certs = SignCertVerifier(creds.anchors)

    def now_txn_time(self) -> str:
        return format_txn_time(datetime.fromtimestamp(self.clock(), UTC))

    async def exchange(
        self, op: Operation, key: str, acp: AcpRequest, *, money: bool
    ) -> AcpReply | ChannelResult:
        """The verified reply, or the result of a failed exchange. ``money``: the request may
        move money, so a reply we cannot trust leaves the outcome UNKNOWN."""
        fields = signed({**acp.fields, "certId": self.creds.cert_id}, self.creds.private_key)
        request = Request("POST", acp.path, {"content-type": FORM}, encode_form(fields))
        try:
            response = await self.transport.send(request)
        except ChannelError as exc:
            outcome = Outcome.UNKNOWN if exc.sent else Outcome.TECHNICAL_FAILURE
            return result(op, key, outcome, exc.reason, exc.message)
        if response.status >= 500:
            return result(op, key, Outcome.UNKNOWN, f"http_{response.status}", "server error")
        untrusted = Outcome.UNKNOWN if money else Outcome.TECHNICAL_FAILURE
        if response.status != 200:
            return result(op, key, untrusted, f"http_{response.status}", "unexpected status")
        try:
            reply = decode_form(response.body)
            verify_message(reply, self.certs, self.clock(), self.policy)
        except AcpError as exc:
            log.warning("unionpay.bad_reply", channel=self.channel_name, reason=exc.reason)
            return result(op, key, untrusted, "bad_response_signature", exc.message)
        sent_order = acp.fields.get("orderId")
        if reply.get("merId") != self.creds.mer_id or (
            sent_order is not None and reply.get("orderId") != sent_order
        ):
            return result(op, key, untrusted, "bad_response", "a reply about another order")
        try:
            return parse_reply(reply)
        except AcpError as exc:
            return result(op, key, untrusted, exc.reason, exc.message)

    async def query_order(
        self,
        op: Operation,
        order_id: str,
        query_id: str | None = None,
        *,
        sent_at: datetime | None = None,
    ) -> QueryReply | ChannelResult:
        """queryTrans of ``order_id``: by the txnTime remembered for it, else by ``sent_at``
        formatted as the request formatted it, else by the queryId ``query_id`` (also when
        UnionPay knows no such orderId at ``sent_at``: the queryId settles it)."""
        remembered = self.memory.txn_time(order_id)
        if remembered is not None and sent_at is not None:
            self._check_sent_at(order_id, remembered, sent_at)
        if remembered is None and sent_at is not None:
            found = await self._query_at(op, order_id, format_txn_time(sent_at))
            not_found = isinstance(found, QueryReply) and found.verdict is Verdict.NOT_FOUND
            if not (not_found and query_id):
                return found
        return await self._query_known(op, order_id, query_id)

    async def _query_known(
        self, op: Operation, order_id: str, query_id: str | None
    ) -> QueryReply | ChannelResult:
        """queryTrans of ``order_id`` by its remembered txnTime, else by ``query_id``."""
        mer_id = self.creds.mer_id
        txn_time = self.memory.txn_time(order_id)
        if txn_time is not None:
            acp = build_query(mer_id=mer_id, txn_time=txn_time, order_id=order_id)
        elif query_id:
            acp = build_query(mer_id=mer_id, txn_time=self.now_txn_time(), query_id=query_id)
        else:
            return result(
                op,
                order_id,
                Outcome.UNKNOWN,
                "txn_time_unknown",
                "neither the txnTime nor the queryId of this order is known",
            )
        reply = await self.exchange(op, order_id, acp, money=False)
        if isinstance(reply, ChannelResult):
            return reply
        try:
            return parse_query_reply(reply.fields)
        except AcpError as exc:
            return result(op, order_id, Outcome.UNKNOWN, exc.reason, exc.message)

    async def _query_at(
        self, op: Operation, order_id: str, txn_time: str
    ) -> QueryReply | ChannelResult:
        """queryTrans of ``order_id`` sent at ``txn_time``. The time is remembered only once
        UnionPay has found the transaction by it: a wrong ``sent_at`` must not shadow the right
        one (or a later notify's) on the next query. A follow-up found this way is linked to
        its hold again (through the hold key UnionPay echoes in ``reqReserved``)."""
        try:
            acp = build_query(mer_id=self.creds.mer_id, txn_time=txn_time, order_id=order_id)
        except AcpError as exc:  # nothing was sent
            return result(op, order_id, Outcome.TECHNICAL_FAILURE, exc.reason, exc.message)
        reply = await self.exchange(op, order_id, acp, money=False)
        if isinstance(reply, ChannelResult):
            return reply
        try:
            found = parse_query_reply(reply.fields)
        except AcpError as exc:
            return result(op, order_id, Outcome.UNKNOWN, exc.reason, exc.message)
        if found.verdict is not Verdict.SUCCESS:
            return found
        self.memory.remember(order_id, txn_time)
        hold_key = reply.fields.get("reqReserved", "")
        if hold_key not in ("", order_id) and found.txn_type in FOLLOW_UP_STATES:
            assert found.txn_type is not None
            self.memory.link(hold_key, found.txn_type, order_id)
            done = found.orig_verdict is Verdict.SUCCESS
            if found.txn_type is TxnType.PREAUTH_COMPLETE and done and found.query_id:
                self.memory.captured(hold_key, found.query_id)
        return found

    def _check_sent_at(self, order_id: str, remembered: str, sent_at: datetime) -> None:
        """The remembered txnTime wins (it is what UnionPay has on file); a caller's journaled
        ``sent_at`` that disagrees with it is worth a look — a journal that drifted from what
        was sent, or a key resent under a later time — but changes nothing."""
        try:
            journaled = format_txn_time(sent_at)
        except (OverflowError, ValueError):
            journaled = "unformattable"
        if journaled != remembered:
            log.warning(
                "unionpay.sent_at_disagrees",
                channel=self.channel_name,
                order=order_id,
                remembered_txn_time=remembered,
                sent_at_txn_time=journaled,
            )
