"""One signed exchange with UnionPay: sign, send through the Transport, verify, classify.

The channel's operations are built from two calls: :meth:`AcpClient.exchange` (any request)
and :meth:`AcpClient.query_order` (queryTrans of one orderId). Failures come back as
``ChannelResult`` values rather than exceptions, already classified the way the router needs:
a transport failure is UNKNOWN when the request may have been sent and TECHNICAL_FAILURE when
it certainly was not; a 5xx is UNKNOWN; a reply that is not form-encoded, not signed by a
certificate chaining to UnionPay's root, or about another merchant or order cannot be trusted —
TECHNICAL_FAILURE (``bad_response_signature``), or UNKNOWN when the request may have moved money.

The client also remembers each orderId's ``txnTime``: ACP identifies a transaction by orderId
*and* txnTime, so a query needs both.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from channels.model import ChannelError, ChannelResult, Operation, Outcome
from channels.transport import Request, Transport

from .credentials import MerchantCredentials
from .errors import AcpError
from .messages import AcpRequest, build_query, decode_form, encode_form, format_txn_time
from .pki import SignCertVerifier
from .responses import AcpReply, QueryReply, parse_query_reply, parse_reply
from .signing import SignPolicy, signed, verify_message

__all__ = ["FORM", "AcpClient", "result"]

log = structlog.get_logger(__name__)

FORM = "application/x-www-form-urlencoded;charset=UTF-8"
MEMORY = 100_000  # remembered txnTimes: a day of a busy merchant's transactions


def result(op: Operation, key: str, outcome: Outcome, reason: str, message: str) -> ChannelResult:
    return ChannelResult(op, outcome, key, reason=reason, message=message)


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
        self._txn_times: OrderedDict[str, str] = OrderedDict()  # orderId → its txnTime

    def reload(self, creds: MerchantCredentials, policy: SignPolicy) -> None:
        self.creds, self.policy = creds, policy
        self.certs = SignCertVerifier(creds.anchors)

    def now_txn_time(self) -> str:
        return format_txn_time(datetime.fromtimestamp(self.clock(), UTC))

    def remember(self, order_id: str, txn_time: str, *, authoritative: bool = False) -> list[str]:
        """Note an orderId's txnTime; returns the orderIds forgotten to stay bounded.

        A resent request keeps the first txnTime: that is the one UnionPay has on file (a
        notify's txnTime is UnionPay's own record, ``authoritative``, and replaces it)."""
        if authoritative or order_id not in self._txn_times:
            self._txn_times[order_id] = txn_time
        self._txn_times.move_to_end(order_id)
        forgotten = []
        while len(self._txn_times) > MEMORY:
            forgotten.append(self._txn_times.popitem(last=False)[0])
        return forgotten

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
        self, op: Operation, order_id: str, query_id: str | None = None
    ) -> QueryReply | ChannelResult:
        """queryTrans of ``order_id`` (by its remembered txnTime, else by ``query_id``)."""
        mer_id = self.creds.mer_id
        txn_time = self._txn_times.get(order_id)
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
