"""What the provider simulators remember: trades, holds and their refunds.

The records are deliberately mutable (unlike the switch's messages): a simulated provider moves a
trade through its own states as requests and customers act on it, and every provider simulator
works on the same record shape so the control API, bills and tests can read them alike. ``state``
is the provider's own word (NOTPAY, WAIT_BUYER_PAY, AUTHORIZED, ...), not the switch's scale.

Lookups are by the merchant's key (``out_trade_no`` / ``out_order_no`` / ``orderId``), by the
provider's reference (transaction_id, trade_no, auth_no, queryId), and for refunds by the
refund key. A trade may carry more than one provider reference (an Alipay freeze has an auth_no
and, once captured, a trade_no): register extra ones with :meth:`Ledger.add_ref`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from channels.model import Provider

__all__ = ["Ledger", "SimRefund", "Trade", "TradeKind"]

TradeKind = Literal["payment", "preauth"]


@dataclass(slots=True)
class SimRefund:
    out_refund_no: str
    provider_ref: str
    amount_fen: int
    state: str
    accepted_at: float  # simulated Unix time the provider accepted the refund
    fee_mfen: int = 0  # fee returned with the refund (positive milli-fen)
    finished_at: float | None = None


@dataclass(slots=True)
class Trade:
    provider: Provider
    merchant_id: str
    out_trade_no: str
    provider_ref: str
    kind: TradeKind
    amount_fen: int
    state: str
    params: dict[str, Any]  # the original request, to recognise an identical replay
    created_at: float
    payer_id: str = ""
    paid_fen: int = 0
    held_fen: int = 0
    captured_fen: int = 0
    released_fen: int = 0
    refunded_fen: int = 0
    fee_mfen: int = 0
    paid_at: float | None = None
    finished_at: float | None = None
    refunds: dict[str, SimRefund] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["provider"] = self.provider.value
        return out


_TradeKey = tuple[Provider, str, str]


class Ledger:
    """All simulated trades of all providers, in the order they were created."""

    def __init__(self) -> None:
        self._trades: dict[_TradeKey, Trade] = {}
        self._refs: dict[tuple[Provider, str], Trade] = {}
        self._refunds: dict[_TradeKey, Trade] = {}
        self._locks: dict[_TradeKey, trio.Lock] = {}

    def __len__(self) -> int:
        return len(self._trades)

    def add(self, trade: Trade) -> Trade:
        """Record a new trade; a second one under the same merchant key is a programming error
        (the provider simulator must look it up first and answer the replay itself)."""
        key = _key(trade)
        if key in self._trades:
            raise ValueError(f"trade {trade.out_trade_no!r} already exists")
        self._trades[key] = trade
        if trade.provider_ref:
            self._refs[(trade.provider, trade.provider_ref)] = trade
        for refund in trade.refunds.values():
            self._refunds[(trade.provider, trade.merchant_id, refund.out_refund_no)] = trade
        return trade

    def get(self, provider: Provider, merchant_id: str, out_trade_no: str) -> Trade | None:
        return self._trades.get((provider, merchant_id, out_trade_no))

    def add_ref(self, trade: Trade, provider_ref: str) -> None:
        """Make ``trade`` findable by another provider reference as well."""
        self._refs[(trade.provider, provider_ref)] = trade

    def by_ref(self, provider: Provider, provider_ref: str) -> Trade | None:
        trade = self._refs.get((provider, provider_ref))
        if trade is not None:
            return trade
        # a simulator may have set trade.provider_ref after add(): find it and remember it
        for candidate in self._trades.values():
            if candidate.provider is provider and candidate.provider_ref == provider_ref:
                self._refs[(provider, provider_ref)] = candidate
                return candidate
        return None

    def add_refund(self, trade: Trade, refund: SimRefund) -> SimRefund:
        """Attach ``refund`` to ``trade`` and index it by its refund key."""
        if refund.out_refund_no in trade.refunds:
            raise ValueError(f"refund {refund.out_refund_no!r} already exists")
        trade.refunds[refund.out_refund_no] = refund
        self._refunds[(trade.provider, trade.merchant_id, refund.out_refund_no)] = trade
        if refund.provider_ref:
            self._refs.setdefault((trade.provider, refund.provider_ref), trade)
        return refund

    def refund(
        self, provider: Provider, merchant_id: str, out_refund_no: str
    ) -> tuple[Trade, SimRefund] | None:
        """The refund with this key and its trade (refund keys are unique per merchant)."""
        trade = self._refunds.get((provider, merchant_id, out_refund_no))
        if trade is None:  # added straight into trade.refunds: look for it once
            for candidate in self.trades(provider, merchant_id):
                if out_refund_no in candidate.refunds:
                    self._refunds[(provider, merchant_id, out_refund_no)] = candidate
                    trade = candidate
                    break
        if trade is None or out_refund_no not in trade.refunds:
            return None
        return trade, trade.refunds[out_refund_no]

    def trades(
        self, provider: Provider | None = None, merchant_id: str | None = None
    ) -> list[Trade]:
        return [
            t
            for t in self._trades.values()
            if (provider is None or t.provider is provider)
            and (merchant_id is None or t.merchant_id == merchant_id)
        ]

    def lock(self, trade: Trade) -> trio.Lock:
        """The trade's own lock: hold it across a read-check-update that awaits (concurrent
        refunds of one payment must not both pass the "refundable amount" check)."""
        return self._locks.setdefault(_key(trade), trio.Lock())

    def snapshot(
        self, provider: Provider | None = None, merchant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """JSON-able copies of the trades, for the control API and tests."""
        return [t.to_json() for t in self.trades(provider, merchant_id)]


def _key(trade: Trade) -> _TradeKey:
    return (trade.provider, trade.merchant_id, trade.out_trade_no)
