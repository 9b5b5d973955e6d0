"""What the simulated Alipay knows beyond the shared ledger, and the helpers its handlers share.

The ledger's :class:`~channels.sim.ledger.Trade` carries the money every simulator reports
alike (held, captured, released, refunded, fees). Alipay needs more per order: the app and its
notify_url and charset, the captured trade of a pre-authorization (its own trade_no and
trade_status), the fund operations (freeze, unfreezes) by out_request_no. That lives here in a
:class:`Detail` per ledger trade. A pre-authorization and its captured trade are one ledger
record: the trade's out_trade_no (normally the hold key itself) is indexed to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio

from channels.alipay.credentials import ProviderKeys
from channels.alipay.requests import CHINA, TIMESTAMP_FORMAT
from channels.model import Provider
from channels.money import AmountError, yuan_to_fen
from channels.sim.alipay_notify import notify_accepted, notify_send
from channels.sim.base import SimContext, SimMerchant
from channels.sim.callbacks import ALIPAY_RETRY_S, Delivery
from channels.sim.ledger import Trade

__all__ = [
    "ALIPAY",
    "AlipayBook",
    "Call",
    "Detail",
    "FundOperation",
    "amount_of",
    "fail",
    "ok",
    "text_of",
]

ALIPAY = Provider.ALIPAY
PROCESSING_S = 0.005  # real seconds a money-moving request takes inside its trade's lock


@dataclass(slots=True)
class FundOperation:
    operation_id: str
    out_request_no: str
    kind: str  # FREEZE | UNFREEZE
    amount_fen: int
    status: str  # INIT | SUCCESS | CLOSED
    created_at: float
    finished_at: float | None = None


@dataclass(slots=True)
class Detail:
    app_id: str
    notify_url: str
    charset: str
    subject: str
    store_id: str = ""
    buyer_logon_id: str = ""
    trade_no: str = ""  # the payment trade, or the capture of a pre-authorization
    trade_key: str = ""  # that trade's out_trade_no
    trade_status: str = ""
    trade_params: dict[str, Any] | None = None  # the capturing trade.pay, for replays
    captured_at: float | None = None
    operations: dict[str, FundOperation] = field(default_factory=dict)  # by out_request_no


@dataclass(frozen=True, slots=True)
class Call:
    """One verified gateway request."""

    method: str
    merchant: SimMerchant
    app_id: str
    biz: Mapping[str, Any]
    notify_url: str
    charset: str


def ok(**fields: Any) -> dict[str, Any]:
    return {"code": "10000", "msg": "Success", **fields}


def text_of(biz: Mapping[str, Any], name: str) -> str:
    """A biz_content string field ("" when absent or not a string)."""
    value = biz.get(name)
    return value if isinstance(value, str) else ""


def amount_of(biz: Mapping[str, Any], name: str) -> int | None:
    """A positive exact yuan amount in fen, or None."""
    try:
        fen = yuan_to_fen(text_of(biz, name))
    except AmountError:
        return None
    return fen if fen > 0 else None


_MESSAGES = {
    "40001": "Missing Required Arguments",
    "40002": "Invalid Arguments",
    "40004": "Business Failed",
}


def fail(sub_code: str, sub_msg: str, code: str = "40004") -> dict[str, Any]:
    msg = _MESSAGES.get(code, "Failed")
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


class AlipayBook:
    def __init__(self, ctx: SimContext, keys: ProviderKeys) -> None:
        self.ctx = ctx
        self.keys = keys
        self.details: dict[tuple[str, str], Detail] = {}
        self.trade_keys: dict[tuple[str, str], Trade] = {}
        self.bills: dict[str, bytes] = {}  # download token → archive (the last few only)

    async def processing(self) -> None:
        """The time the money takes to move: another request for the same trade that is not
        serialised by the trade's lock would overtake this one here."""
        await trio.sleep(PROCESSING_S)

    # -- time and ids -----------------------------------------------------------------------

    def now(self) -> float:
        return self.ctx.clock.now()

    def stamp(self, t: float | None = None) -> str:
        moment = datetime.fromtimestamp(self.now() if t is None else t, CHINA)
        return moment.strftime(TIMESTAMP_FORMAT)

    def _digits(self, n: int) -> str:
        return "".join(self.ctx.rng.choices("0123456789", k=n))

    def _day(self) -> str:
        return datetime.fromtimestamp(self.now(), CHINA).strftime("%Y%m%d")

    def new_trade_no(self) -> str:
        return f"{self._day()}22001{self._digits(15)}"

    def new_auth_no(self) -> str:
        return f"{self._day()}10002001{self._digits(12)}"

    def new_operation_id(self) -> str:
        return f"{self._day()}1000{self._digits(14)}"

    def new_notify_id(self) -> str:
        return f"{self._day()}00222{self._digits(21)}"

    def new_buyer(self) -> tuple[str, str]:
        """A payer's user id and masked logon id."""
        return f"2088{self._digits(12)}", f"{self.ctx.rng.choice('abcdlmz')}***@example.com"

    # -- lookups ----------------------------------------------------------------------------

    def detail(self, trade: Trade) -> Detail:
        return self.details[(trade.merchant_id, trade.out_trade_no)]

    def add(self, trade: Trade, detail: Detail) -> None:
        self.ctx.ledger.add(trade)
        self.details[(trade.merchant_id, trade.out_trade_no)] = detail

    def order(self, merchant_id: str, out_order_no: str = "", auth_no: str = "") -> Trade | None:
        """A pre-authorization by out_order_no or auth_no."""
        if auth_no:
            found = self.ctx.ledger.by_ref(ALIPAY, auth_no)
        else:
            found = self.ctx.ledger.get(ALIPAY, merchant_id, out_order_no)
        if found is None or found.kind != "preauth" or found.merchant_id != merchant_id:
            return None
        return found

    def trade(self, merchant_id: str, out_trade_no: str = "", trade_no: str = "") -> Trade | None:
        """A trade by out_trade_no or trade_no: a payment, or a captured pre-authorization."""
        if trade_no:
            found = self.ctx.ledger.by_ref(ALIPAY, trade_no)
            if found is not None and self.detail(found).trade_no != trade_no:
                found = None
        else:
            found = self.trade_keys.get((merchant_id, out_trade_no))
            if found is None:
                found = self.ctx.ledger.get(ALIPAY, merchant_id, out_trade_no)
                if found is not None and found.kind == "preauth":
                    found = None  # an uncaptured freeze is not a trade
        if found is None or found.merchant_id != merchant_id:
            return None
        return found

    def index_trade(self, trade: Trade, out_trade_no: str, trade_no: str) -> None:
        self.trade_keys[(trade.merchant_id, out_trade_no)] = trade
        self.ctx.ledger.add_ref(trade, trade_no)

    # -- notifies ---------------------------------------------------------------------------

    def notify(self, trade: Trade, fields: Mapping[str, str]) -> None:
        """Send a notify to the order's notify_url, re-stamped and re-signed for each retry
        (with the same notify_id, as Alipay does); no notify_url, no notify."""
        url = self.detail(trade).notify_url
        if not url:
            return
        frozen = dict(fields)

        def build(t: float) -> tuple[dict[str, str], bytes]:
            return notify_send(frozen, self.keys.alipay_private_key, self.stamp(t))

        self.ctx.callbacks.submit(
            Delivery(
                provider=ALIPAY,
                merchant_id=trade.merchant_id,
                url=url,
                event_key=frozen["notify_id"],
                build=build,
                accepted=notify_accepted,
                schedule=ALIPAY_RETRY_S,
            )
        )
