"""The simulated WeChat Pay's trade bill: the ledger's day, written as WeChat writes it.

A payment row is dated by its payment time and a refund row by the refund's acceptance time,
both in Beijing time, so a payment at 23:59:59 belongs to its own day and its refund may be on
the next one. The file is UTF-8 with a BOM, CRLF, a backtick before every data field, the
27-column ALL layout and the 7-column summary; amounts in yuan, fees with 5 decimals. The
download is gzip when asked for (``tar_type=GZIP``); the ticket's hash is the SHA1 of the plain
file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from channels.money import decimal_to_units, units_to_decimal
from channels.sim.ledger import SimRefund, Trade
from channels.sim.wechatpay_trades import FEE_RATE_PPM, PAID_STATES
from channels.wechatpay.bill import DETAIL_COLUMNS, SUMMARY_COLUMNS
from channels.wechatpay.times import CST

__all__ = ["BillFile", "bill_rows", "render_tradebill"]

_BOM = "\ufeff"


def _yuan(fen: int) -> str:
    return units_to_decimal(fen, 2)


def _fee(mfen: int) -> str:
    return units_to_decimal(mfen, 5)


def _rate(ppm: int) -> str:
    return f"{units_to_decimal(ppm, 4)}%"


def _day(moment: float) -> date:
    return datetime.fromtimestamp(moment, CST).date()


def _time(moment: float) -> str:
    return datetime.fromtimestamp(moment, CST).strftime("%Y-%m-%d %H:%M:%S")


def _payment_row(trade: Trade, paid_at: float, appid: str) -> dict[str, str]:
    return {
        "交易时间": _time(paid_at),
        "交易状态": "SUCCESS",
        "应结订单金额": _yuan(trade.amount_fen),
        "微信退款单号": "0",
        "商户退款单号": "0",
        "退款金额": "0.00",
        "退款类型": "",
        "退款状态": "",
        "手续费": _fee(trade.fee_mfen),
        "订单金额": _yuan(trade.amount_fen),
        "申请退款金额": "0.00",
        **_common(trade, appid),
    }


def _refund_row(trade: Trade, refund: SimRefund, appid: str) -> dict[str, str]:
    return {
        "交易时间": _time(refund.accepted_at),
        "交易状态": "REFUND",
        "应结订单金额": "0.00",
        "微信退款单号": refund.provider_ref,
        "商户退款单号": refund.out_refund_no,
        "退款金额": _yuan(refund.amount_fen),
        "退款类型": "ORIGINAL",
        "退款状态": refund.state,
        "手续费": _fee(-refund.fee_mfen),
        "订单金额": "0.00",
        "申请退款金额": _yuan(refund.amount_fen),
        **_common(trade, appid),
    }


def _common(trade: Trade, appid: str) -> dict[str, str]:
    return {
        "公众账号ID": appid,
        "商户号": trade.merchant_id,
        "特约商户号": "0",
        "设备号": "",
        "微信订单号": trade.provider_ref,
        "商户订单号": trade.out_trade_no,
        "用户标识": trade.payer_id,
        "交易类型": "JSAPI",
        "付款银行": "OTHERS",
        "货币种类": "CNY",
        "代金券金额": "0.00",
        "充值券退款金额": "0.00",
        "商品名称": str(trade.params.get("description", "")),
        "商户数据包": str(trade.params.get("attach", "")),
        "费率": _rate(FEE_RATE_PPM),
        "费率备注": "",
    }


def bill_rows(trades: Iterable[Trade], bill_date: date, appid: str) -> list[dict[str, str]]:
    """The day's rows, by time: payments paid that day, refunds accepted that day."""
    dated: list[tuple[float, dict[str, str]]] = []
    for trade in trades:
        if trade.paid_at is not None and trade.state in PAID_STATES:
            if _day(trade.paid_at) == bill_date:
                dated.append((trade.paid_at, _payment_row(trade, trade.paid_at, appid)))
            dated.extend(
                (refund.accepted_at, _refund_row(trade, refund, appid))
                for refund in trade.refunds.values()
                if _day(refund.accepted_at) == bill_date
            )
    dated.sort(key=lambda pair: pair[0])
    return [row for _, row in dated]


@dataclass(frozen=True, slots=True)
class BillFile:
    content: bytes  # the plain CSV, what the hash covers
    sha1: str

    def download(self, gzipped: bool) -> bytes:
        return gzip.compress(self.content, mtime=0) if gzipped else self.content


def render_tradebill(rows: Iterable[Mapping[str, str]]) -> BillFile:
    rows = list(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(DETAIL_COLUMNS)
    for row in rows:
        writer.writerow(f"`{row[name]}" for name in DETAIL_COLUMNS)

    def total(name: str, places: int) -> str:
        return units_to_decimal(sum(decimal_to_units(row[name], places) for row in rows), places)

    writer.writerow(SUMMARY_COLUMNS)
    writer.writerow(
        f"`{value}"
        for value in (
            str(len(rows)),
            total("应结订单金额", 2),
            total("退款金额", 2),
            total("充值券退款金额", 2),
            total("手续费", 5),
            total("订单金额", 2),
            total("申请退款金额", 2),
        )
    )
    content = (_BOM + out.getvalue()).encode("utf-8")
    return BillFile(content, hashlib.sha1(content).hexdigest())
