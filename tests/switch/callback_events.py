"""Shared helpers of the callback-store tests: events as a verifier hands them over, and
an order with its hold."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

from channels.model import CallbackEvent, CallbackKind, Provider
from switch.store import Store
from switch.store.payments import (
    CallbackOutcome,
    record_callback,
)
from tests.switch.callback_harness import (
    create_order_with_hold,
    set_order_money,
    unique_key,
)

CHANNEL = "wx-main"
STATES = ("requested", "pending", "unknown", "approved", "declined", "failed", "reversed")
_event_ids = itertools.count(1)


def make_event(
    key: str,
    *,
    kind: CallbackKind = CallbackKind.PAYMENT,
    status: str = "SUCCESS",
    succeeded: bool = True,
    amount_fen: int = 20000,
    event_id: str | None = None,
    channel: str = CHANNEL,
    provider: Provider = Provider.WECHATPAY,
    refund_fen: int | None = None,
    out_refund_no: str | None = None,
    provider_ref: str | None = None,
    refund_cumulative: bool = False,
) -> CallbackEvent:
    return CallbackEvent(
        provider=provider,
        channel=channel,
        kind=kind,
        event_id=event_id or f"EV-{key}-{next(_event_ids)}",
        status=status,
        out_trade_no=key,
        provider_ref=provider_ref or f"REF-{key}",
        amount_fen=amount_fen,
        refund_fen=refund_fen,
        out_refund_no=out_refund_no,
        succeeded=succeeded,
        refund_cumulative=refund_cumulative,
    )


async def record(store: Store, event: CallbackEvent) -> CallbackOutcome:
    return await record_callback(
        store.db, event, body=b'{"raw": "as received"}', headers={"wechatpay-nonce": "n1"}
    )


async def new_order(store: Store, amount_fen: int = 20000, state: str = "requested") -> str:
    key = unique_key()
    await create_order_with_hold(
        store,
        order_id=key,
        channel=CHANNEL,
        provider=Provider.WECHATPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
        state=state,
    )
    return key


ALIPAY_CHANNEL = "alipay-main"


async def alipay_order(store: Store, amount_fen: int = 30000, state: str = "approved") -> str:
    """An Alipay order whose hold is ``state``, its money on the order when approved."""
    key = unique_key()
    await create_order_with_hold(
        store,
        order_id=key,
        channel=ALIPAY_CHANNEL,
        provider=Provider.ALIPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
        state=state,
    )
    if state == "approved":
        await set_order_money(store, key, held_fen=amount_fen)
    return key


def alipay_event(key: str, kind: CallbackKind, **fields: Any) -> CallbackEvent:
    event = make_event(
        key, kind=kind, provider=Provider.ALIPAY, channel=ALIPAY_CHANNEL, amount_fen=30000
    )
    return replace(event, **fields)


def unfreeze_notify(key: str, amount_fen: int, **fields: Any) -> CallbackEvent:
    """The unfreeze Alipay makes by itself: it names the hold only, no request of ours."""
    return alipay_event(key, CallbackKind.RELEASE, amount_fen=amount_fen, **fields)
