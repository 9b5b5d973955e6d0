"""The payment half of an OrderActor: price, route, hold, capture, release, refund.

Every provider request follows one pattern: journal the intent with its key, write the attempt
row, send, record the answer (attempt row and money in one transaction, then the journal).
When the answer is missing (a crash, a timeout) the step that finds the attempt open looks at
the attempt row first (a callback may have settled it), then asks the provider by the same key
(query, or refund query), and sends the same request again only where the key makes that
harmless. The order of those looks is the whole of "unknown is not failed".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import structlog
import trio

from actors import ActorError, ActorNotFound
from channels.actor_messages import (
    Capture,
    Close,
    Hold,
    Query,
    RecordApproval,
    Refund,
    RefundQuery,
    Release,
)
from channels.model import (
    CaptureRequest,
    ChannelResult,
    HoldRequest,
    Operation,
    Outcome,
    PaymentState,
    Provider,
    RefundRequest,
    RefundState,
    ReleaseRequest,
)
from devices.crashpoints import crash_point
from ops.metrics import METRICS
from switch.routing import NoEligibleChannel, RouteRequest
from switch.service import Flow, ServiceError
from switch.store.attempts import late_refund_key
from switch.store.orders import (
    AttemptRow,
    attempt_state,
    insert_attempt,
    open_refund_attempts_of,
    settle_attempt,
)

from .base import OrderBase
from .model import HoldAttempt, OrderState, SettleStep
from .pricing_step import price_postpay, price_prepay

__all__ = ["PaymentSteps"]

log = structlog.get_logger("orders")

_STATE_OF: Final = {
    Outcome.APPROVED: "approved",
    Outcome.DECLINED: "declined",
    Outcome.TECHNICAL_FAILURE: "failed",
    Outcome.PENDING: "pending",
    Outcome.UNKNOWN: "unknown",
}
# attempt row state -> the hold_result outcome the journal records
_HOLD_OUTCOME: Final = {
    "approved": "approved",
    "declined": "declined",
    "failed": "failed",
    "reversed": "closed",
    "pending": "pending",
    "unknown": "unknown",
}
_PAYMENT_STATE: Final = {
    PaymentState.HELD: "approved",
    PaymentState.CAPTURED: "approved",
    PaymentState.AWAITING_CUSTOMER: "pending",
    PaymentState.CLOSED: "reversed",
    PaymentState.FAILED: "declined",
    PaymentState.NOT_FOUND: "failed",
}
_FINAL: Final = frozenset({"approved", "declined", "failed", "reversed"})


class PaymentSteps(OrderBase):
    """Price, route, hold, capture, release and refund: the payment side of the order."""

    # -- plumbing ----------------------------------------------------------------------------

    async def channel_call(self, channel: str, msg: Any, op: Operation) -> ChannelResult:
        """A provider request through its ChannelActor. A call that failed on our side may
        still have reached the provider: UNKNOWN, unless the actor was not there at all."""
        crash_point(f"order.before_{op.value}")
        try:
            result: ChannelResult = await self.call(
                f"channels/{channel}", msg, timeout=self.deps.timings.provider_call_timeout_s
            )
        except ActorNotFound as exc:
            return ChannelResult(
                op, Outcome.TECHNICAL_FAILURE, "", reason="no_channel", message=str(exc)
            )
        except (ActorError, trio.TooSlowError) as exc:
            return ChannelResult(op, Outcome.UNKNOWN, "", reason="call_failed", message=str(exc))
        crash_point(f"order.after_{op.value}_sent")
        return result

    def query_due(self, key: str, sent_at: datetime) -> bool:
        """Whether to ask the provider about ``key`` now; otherwise a wake is scheduled."""
        schedule = self.deps.timings.query_after_s
        count = self.queries.get(key, 0)
        wait = schedule[min(count, len(schedule) - 1)]
        due_at = sent_at + timedelta(seconds=wait) if count == 0 else None
        if due_at is not None and self.now() < due_at:
            self._schedule((due_at - self.now()).total_seconds())
            return False
        last = self.last_query.get(key)
        if last is not None and trio.current_time() - last < wait:
            self._schedule(wait - (trio.current_time() - last))
            return False
        self.queries[key] = count + 1
        self.last_query[key] = trio.current_time()
        self._schedule(schedule[min(count + 1, len(schedule) - 1)])
        return True

    def held_attempt(self) -> HoldAttempt:
        hold = self.order.approved_hold
        if hold is None:
            raise RuntimeError(f"order {self.order_id}: no approved hold")
        return hold

    # -- pricing and routing -------------------------------------------------------------------

    async def step_created(self) -> bool:
        if self.order.data.flow == "postpay":
            return await self.lock_sale()
        try:
            priced = await price_prepay(self.deps, self.order.data)
        except ServiceError as exc:
            return await self.end(OrderState.FAILED, exc.detail)
        await self.record("priced", priced)
        return True

    async def step_price_sale(self) -> bool:
        """Post-pay: the locked sale's amount, less the discount, is what the customer pays."""
        assert self.order.sale is not None
        if self.order.cancel_requested:
            await self.unlock_sale()
            return await self.end(OrderState.CANCELLED)
        try:
            priced = await price_postpay(self.deps, self.order.data, self.order.sale)
        except ServiceError as exc:
            await self.unlock_sale()
            return await self.end(OrderState.FAILED, exc.detail)
        await self.record("priced", priced)
        return True

    async def step_route(self) -> bool:
        o = self.order
        assert o.priced is not None
        if o.holds and any(h.open for h in o.holds):
            return await self.step_holding()
        if o.cancel_requested or o.failure:
            await self.unlock_sale()
            ending = OrderState.CANCELLED if o.cancel_requested else OrderState.FAILED
            return await self.end(ending, o.failure)
        if len(o.holds) >= self.deps.timings.max_hold_attempts:
            await self.unlock_sale()
            return await self.end(OrderState.FAILED, "no payment channel approved the payment")
        request = RouteRequest(
            order_id=self.order_id,
            method=o.data.method,
            flow=Flow(o.data.flow),
            station_id=o.data.station_id,
            amount_fen=o.priced.hold_fen,
            exclude=o.excluded,
            now=self.now(),
        )
        try:
            decision = await self.deps.router.route(request)
        except NoEligibleChannel as exc:
            await self.unlock_sale()
            return await self.end(OrderState.FAILED, f"no payment channel: {exc.detail}")
        attempt_no = o.next_attempt_no
        key = f"{self.order_id}H{attempt_no}"
        sent_at = self.now()
        await self.record(
            "hold_requested",
            {
                "attempt_no": attempt_no,
                "key": key,
                "channel": decision.channel,
                "provider": decision.provider.value,
                "amount_fen": o.priced.hold_fen,
                "sent_at": sent_at.isoformat(),
                "routing": decision.to_json(),
            },
        )
        await insert_attempt(
            self.deps.db,
            order_id=self.order_id,
            attempt_no=attempt_no,
            channel=decision.channel,
            provider=decision.provider.value,
            operation="hold",
            key=key,
            amount_fen=o.priced.hold_fen,
            requested_at=sent_at,
        )
        hold = self.order.hold
        assert hold is not None
        await self.send_hold(hold)
        return True

    # -- the hold ------------------------------------------------------------------------------

    async def send_hold(self, hold: HoldAttempt) -> None:
        o = self.order
        config = self.deps.channels[hold.channel]
        request = HoldRequest(
            key=hold.key,
            amount_fen=hold.amount_fen,
            description=f"Fuel at {o.data.station_id} pump {o.data.pump_no}",
            payer_id=o.data.payer_id,
            notify_url=config.notify_url,
            created_at=hold.sent_at,
            expires_at=hold.sent_at
            + timedelta(seconds=self.deps.timings.customer_pay_timeout_s + 60),
        )
        result = await self.channel_call(hold.channel, Hold(request), Operation.HOLD)
        await self.hold_answer(hold, _STATE_OF[result.outcome], result)

    async def hold_answer(
        self, hold: HoldAttempt, state: str, result: ChannelResult | None
    ) -> None:
        settled = await settle_attempt(
            self.deps.db,
            hold.key,
            state,
            provider_ref=result.provider_ref if result else None,
            reason=result.reason if result else None,
        )
        await self.note_hold(hold, settled.attempt, result)

    async def note_hold(
        self, hold: HoldAttempt, attempt: AttemptRow, result: ChannelResult | None
    ) -> None:
        """Journal what the attempt row now says, if the journal does not know it yet."""
        outcome = _HOLD_OUTCOME.get(attempt.state)
        if outcome is None or outcome == hold.outcome:
            return
        payload: dict[str, Any] = {
            "key": hold.key,
            "outcome": outcome,
            "channel": hold.channel,
            "provider_ref": (result.provider_ref if result else None) or attempt.provider_ref,
        }
        if result is not None:
            payload["reason"] = result.reason
            if result.client_data:
                payload["client_data"] = dict(result.client_data)
        if outcome in ("approved", "declined") and hold.outcome == "pending":
            self.cast(f"channels/{hold.channel}", RecordApproval(outcome == "approved"))
        await self.record("hold_result", payload)

    async def step_holding(self) -> bool:
        o = self.order
        hold = next((h for h in o.holds if h.open), None)
        if hold is None:
            return False
        row = await attempt_state(self.deps.db, hold.key)
        if row is not None and row.state in _FINAL:
            await self.note_hold(hold, row, None)
            return True
        if row is None:  # journaled, crashed before the row: nothing was sent
            await insert_attempt(
                self.deps.db,
                order_id=self.order_id,
                attempt_no=hold.attempt_no,
                channel=hold.channel,
                provider=hold.provider,
                operation="hold",
                key=hold.key,
                amount_fen=hold.amount_fen,
                requested_at=hold.sent_at,
            )
            await self.send_hold(hold)
            return True
        age = (self.now() - hold.sent_at).total_seconds()
        timings = self.deps.timings
        if o.failure is None and not o.cancel_requested:
            if hold.outcome == "pending" and age > timings.customer_pay_timeout_s:
                await self.record("failure", {"failure": "the customer did not pay in time"})
            elif (
                hold.outcome in (None, "unknown")
                and age > timings.unknown_budget_s
                and not hold.close_requested
            ):
                log.info("order.hold_unknown_closing", order=self.order_id, key=hold.key)
        if (
            self.order.failure
            or self.order.cancel_requested
            or (hold.outcome in (None, "unknown") and age > timings.unknown_budget_s)
        ):
            return await self.close_hold(hold)
        if not self.query_due(hold.key, hold.sent_at):
            return False
        result = await self.channel_call(
            hold.channel,
            Query(hold.key, hold.provider_ref, sent_at=hold.sent_at),
            Operation.QUERY,
        )
        if result.payment is None or result.outcome in (Outcome.UNKNOWN, Outcome.TECHNICAL_FAILURE):
            return False
        state = _PAYMENT_STATE[result.payment.state]
        if state == "failed" and hold.outcome is None:
            await self.send_hold(hold)  # never reached the provider: send it now, same key
            return True
        if state == "pending" and hold.outcome == "pending":
            return False
        await self.hold_answer(hold, state, result)
        return self.order.hold is not hold

    async def close_hold(self, hold: HoldAttempt) -> bool:
        """The customer cancelled, never paid, or the hold stayed unknown past the budget:
        close it at the provider, so that nothing can be paid on it any more."""
        if not hold.close_requested:
            await self.record("hold_close_requested", {"key": hold.key})
        result = await self.channel_call(
            hold.channel,
            Close(hold.key, hold.provider_ref, sent_at=hold.sent_at),
            Operation.CLOSE,
        )
        if result.outcome is Outcome.APPROVED:
            await self.hold_answer(hold, "reversed", result)
            return True
        if result.outcome is Outcome.DECLINED:
            # Refused because it was paid meanwhile: the query finds it approved.
            query = await self.channel_call(
                hold.channel,
                Query(hold.key, hold.provider_ref, sent_at=hold.sent_at),
                Operation.QUERY,
            )
            if query.payment is not None and query.outcome not in (
                Outcome.UNKNOWN,
                Outcome.TECHNICAL_FAILURE,
            ):
                await self.hold_answer(hold, _PAYMENT_STATE[query.payment.state], query)
                return True
        self._schedule(self.deps.timings.query_after_s[-1])
        return False

    async def step_held(self) -> bool:
        o = self.order
        if o.cancel_requested or o.failure:
            ending = OrderState.CANCELLED if o.cancel_requested else OrderState.FAILED
            await self.unlock_sale()
            return await self.start_release(ending)
        if o.data.flow == "postpay":
            return await self.start_capture()
        await self.record("auth_requested", {"sale_id": f"{self.order_id}S"})
        return True

    # -- capture and release ---------------------------------------------------------------------

    async def step_sale_completed(self) -> bool:
        o = self.order
        assert o.sale is not None
        if o.sale.volume_ml == 0 or o.net_fen == 0:
            ending = OrderState.CANCELLED if o.cancel_requested else OrderState.VOIDED
            return await self.start_release(ending)
        return await self.start_capture()

    async def start_capture(self) -> bool:
        o = self.order
        hold = self.held_attempt()
        amount = o.net_fen
        if amount > hold.amount_fen:
            await self.alert(
                "capture_exceeds_hold", "critical", net_fen=amount, held_fen=hold.amount_fen
            )
            amount = hold.amount_fen
        key = o.sale_id or f"{self.order_id}S"
        sent_at = self.now()
        await self.record(
            "capture_requested",
            {
                "key": key,
                "attempt_no": o.next_attempt_no,
                "amount_fen": amount,
                "sent_at": sent_at.isoformat(),
            },
        )
        await self._insert_settle(hold, "capture", self.order.capture)
        return await self.send_capture()

    async def _insert_settle(
        self, hold: HoldAttempt, operation: str, step: SettleStep | None
    ) -> None:
        assert step is not None
        await insert_attempt(
            self.deps.db,
            order_id=self.order_id,
            attempt_no=step.attempt_no,
            channel=hold.channel,
            provider=hold.provider,
            operation=operation,
            key=step.key,
            amount_fen=step.amount_fen,
            requested_at=step.sent_at,
            reason=step.reason or None,
        )

    async def send_capture(self) -> bool:
        hold, step = self.held_attempt(), self.order.capture
        assert step is not None
        request = CaptureRequest(
            key=hold.key,
            capture_key=step.key,
            amount_fen=step.amount_fen,
            held_fen=hold.amount_fen,
            created_at=step.sent_at,
            provider_ref=hold.provider_ref,
        )
        result = await self.channel_call(hold.channel, Capture(request), Operation.CAPTURE)
        return await self.capture_answer(_STATE_OF[result.outcome], result)

    async def settle_answer(
        self, step: SettleStep, state: str, result: ChannelResult | None, refused: str
    ) -> AttemptRow | None:
        """Record a capture's or release's answer; the attempt row once approved. A refusal is
        alerted and retried later, never given up: the customer has the fuel (a capture), or
        money is still held (a release)."""
        if state in ("declined", "failed"):
            await self.alert(
                refused, "critical", key=step.key, reason=result.reason if result else None
            )
            self._schedule(self.deps.timings.query_after_s[-1])
            return None
        settled = await settle_attempt(
            self.deps.db, step.key, state, provider_ref=result.provider_ref if result else None
        )
        return settled.attempt if settled.attempt.state == "approved" else None

    async def capture_answer(self, state: str, result: ChannelResult | None) -> bool:
        step = self.order.capture
        assert step is not None
        attempt = await self.settle_answer(step, state, result, "capture_refused")
        if attempt is None:
            return False
        await self.record(
            "captured", {"provider_ref": attempt.provider_ref, "amount_fen": attempt.amount_fen}
        )
        o = self.order  # once per sale: "captured" is recorded once, and the order moves on
        volume_ml = o.sale.volume_ml if o.sale is not None else 0
        grade = o.priced.grade if o.priced is not None else None
        METRICS.count_sale(o.data.flow, grade, volume_ml, attempt.amount_fen)
        return await self.after_capture()

    async def after_capture(self) -> bool:
        o = self.order
        if o.data.flow == "postpay":
            await self.record("collect_requested", {"pump_sale_seq": o.data.pump_sale_seq})
            return True
        hold = self.held_attempt()
        if hold.amount_fen - o.captured_fen > 0:
            return await self.start_release(OrderState.COMPLETED)
        return await self.end(OrderState.COMPLETED)

    async def step_capturing(self) -> bool:
        o = self.order
        step = o.capture
        assert step is not None
        if step.done:
            return await self.after_capture()
        row = await attempt_state(self.deps.db, step.key)
        if row is None:
            await self._insert_settle(self.held_attempt(), "capture", step)
            return await self.send_capture()
        if row.state == "approved":
            return await self.capture_answer("approved", None)
        if not self.query_due(step.key, step.sent_at):
            return False
        hold = self.held_attempt()
        query = await self.channel_call(
            hold.channel, Query(hold.key, hold.provider_ref, sent_at=hold.sent_at), Operation.QUERY
        )
        payment = query.payment
        if (
            payment is not None
            and payment.state is PaymentState.CAPTURED
            and (payment.captured_fen >= step.amount_fen)
        ):
            return await self.capture_answer("approved", query)
        if payment is not None and payment.state is PaymentState.HELD:
            return await self.send_capture()  # never captured: the same key again
        return False

    async def start_release(self, ending: OrderState) -> bool:
        o = self.order
        hold = o.approved_hold
        if hold is None:
            return await self.end(ending, o.failure)
        amount = hold.amount_fen - o.captured_fen
        if amount <= 0:
            return await self.end(ending, o.failure)
        sent_at = self.now()
        attempt_no = o.next_attempt_no
        await self.record(
            "release_requested",
            {
                "key": f"{self.order_id}R{attempt_no}",
                "attempt_no": attempt_no,
                "amount_fen": amount,
                "ending": ending.value,
                "sent_at": sent_at.isoformat(),
            },
        )
        await self._insert_settle(hold, "release", self.order.release)
        return await self.send_release()

    async def send_release(self) -> bool:
        hold, step = self.held_attempt(), self.order.release
        assert step is not None
        request = ReleaseRequest(
            key=hold.key,
            release_key=step.key,
            amount_fen=step.amount_fen,
            held_fen=hold.amount_fen,
            created_at=step.sent_at,
            provider_ref=hold.provider_ref,
        )
        result = await self.channel_call(hold.channel, Release(request), Operation.RELEASE)
        return await self.release_answer(_STATE_OF[result.outcome], result)

    async def release_answer(self, state: str, result: ChannelResult | None) -> bool:
        step = self.order.release
        assert step is not None
        attempt = await self.settle_answer(step, state, result, "release_refused")
        if attempt is None:
            return False
        await self.record("released", {"provider_ref": attempt.provider_ref})
        return await self.end(self.order.ending or OrderState.COMPLETED, self.order.failure)

    async def step_releasing(self) -> bool:
        step = self.order.release
        assert step is not None
        if step.done:
            return await self.end(self.order.ending or OrderState.COMPLETED, self.order.failure)
        row = await attempt_state(self.deps.db, step.key)
        if row is None:
            await self._insert_settle(self.held_attempt(), "release", step)
            return await self.send_release()
        if row.state == "approved":
            return await self.release_answer("approved", None)
        if not self.query_due(step.key, step.sent_at):
            return False
        hold = self.held_attempt()
        if hold.provider == Provider.WECHATPAY.value:
            # A prepaid ceiling's remainder goes back as a refund: ask about that refund.
            result = await self.channel_call(
                hold.channel,
                RefundQuery(hold.key, step.key, sent_at=step.sent_at),
                Operation.REFUND_QUERY,
            )
            if result.refund is RefundState.SUCCESS:
                return await self.release_answer("approved", result)
            if result.refund is RefundState.NOT_FOUND:
                return await self.send_release()
            return False
        return await self.send_release()  # unfreeze / cancel: the same key is harmless

    # -- refunds -------------------------------------------------------------------------------

    async def start_refund(
        self, amount_fen: int, reason: str, key: str | None = None
    ) -> SettleStep:
        o = self.order
        hold = self.held_attempt() if key is None else self._hold_of_late_refund(key)
        attempt_no = o.next_attempt_no
        refund_key = key or f"{self.order_id}F{attempt_no}"
        sent_at = self.now()
        await self.record(
            "refund_requested",
            {
                "key": refund_key,
                "attempt_no": attempt_no,
                "amount_fen": amount_fen,
                "reason": reason,
                "sent_at": sent_at.isoformat(),
                "hold_key": hold.key,
            },
        )
        step = self.order.refunds[-1]
        if key is None:
            await self._insert_settle(hold, "refund", step)
        await self.send_refund(step, hold)
        return next(r for r in self.order.refunds if r.key == refund_key)

    def _hold_of_late_refund(self, refund_key: str) -> HoldAttempt:
        for hold in self.order.holds:
            if late_refund_key(hold.key) == refund_key:
                return hold
        raise LookupError(f"order {self.order_id}: no hold for refund {refund_key}")

    async def send_refund(self, step: SettleStep, hold: HoldAttempt) -> None:
        capture = self.order.capture
        late = step.reason == "late_success"
        request = RefundRequest(
            key=hold.key,
            refund_key=step.key,
            amount_fen=step.amount_fen,
            total_fen=hold.amount_fen,
            reason="late payment refunded" if late else "refund on request",
            created_at=step.sent_at,
            provider_ref=(None if late or capture is None else capture.provider_ref)
            or hold.provider_ref,
        )
        result = await self.channel_call(hold.channel, Refund(request), Operation.REFUND)
        await self.refund_answer(step, _STATE_OF[result.outcome], result)

    async def refund_answer(
        self, step: SettleStep, state: str, result: ChannelResult | None
    ) -> None:
        if state in ("declined", "failed"):
            await self.alert(
                "refund_refused", "warning", key=step.key, reason=result.reason if result else None
            )
        settled = await settle_attempt(
            self.deps.db, step.key, state, provider_ref=result.provider_ref if result else None
        )
        outcome = settled.attempt.state
        if outcome != step.outcome and outcome in ("approved", "failed", "declined", "pending"):
            await self.record("refund_result", {"key": step.key, "outcome": outcome})

    def _refunds_pending(self) -> bool:
        return any(not r.done for r in self.order.refunds)

    async def _send_open_refunds(self) -> bool:
        """Late-success refunds queued by the callback path, and journaled refunds without a
        final answer. True when something moved (the loop looks again)."""
        known = {r.key for r in self.order.refunds}
        for row in await open_refund_attempts_of(self.deps.db, self.order_id):
            if row.key not in known and row.reason == "late_success":
                await self.start_refund(row.amount_fen, "late_success", key=row.key)
                return True
        for step in self.order.refunds:
            if step.done:
                continue
            current = await attempt_state(self.deps.db, step.key)
            if current is not None and current.state in _FINAL:
                await self.refund_answer(step, current.state, None)
                return True
            if not self.query_due(step.key, step.sent_at):
                continue
            hold = (
                next(
                    (h for h in self.order.holds if late_refund_key(h.key) == step.key),
                    None,
                )
                or self.held_attempt()
            )
            result = await self.channel_call(
                hold.channel,
                RefundQuery(hold.key, step.key, sent_at=step.sent_at),
                Operation.REFUND_QUERY,
            )
            if result.refund is RefundState.SUCCESS:
                await self.refund_answer(step, "approved", result)
                return True
            if result.refund is RefundState.NOT_FOUND:
                await self.send_refund(step, hold)
                return True
        return False
