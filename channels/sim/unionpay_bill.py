"""The simulator's UnionPay reconciliation file: ZM lines from the ledger, zipped, deflated.

Rows come from the ledger's trades (a completion or consume per captured trade, a row per
refund) dated by UnionPay's clearing day (which turns at 23:00 Beijing time), in the layout
``channels.unionpay.bill`` parses (one table, ``ZM_COLUMNS``, for both). Fees are what
UnionPay charges per transaction: the merchant's rate on the amount, rounded half up to the
fen; a refund gives back the fee on the refunded part, rounded the same way.
"""

from __future__ import annotations

import base64
import io
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from datetime import date

from channels.unionpay import ZM_COLUMNS, ColumnKind, TxnType

from .unionpay_wire import ACC_NO, SimTxn, beijing, clearing_date

__all__ = [
    "FEE_RATE_PPM",
    "MERCHANT_ABBR",
    "fee_fen",
    "file_content",
    "file_name",
    "pack_line",
    "zm_lines",
]

FEE_RATE_PPM = 6000  # 0.60 %, a common online rate for UnionPay cards
MERCHANT_ABBR = "中油测试加油站"  # the merchant short name printed in the file (GBK, 14 bytes)
TXN_CODES: Mapping[TxnType, str] = {
    TxnType.CONSUME: "S22",
    TxnType.PREAUTH_COMPLETE: "S30",
    TxnType.PREAUTH_COMPLETE_CANCEL: "S32",
    TxnType.REFUND: "S33",
}
ACQUIRER = "00010000"


def fee_fen(amount_fen: int, rate_ppm: int = FEE_RATE_PPM) -> int:
    """The fee on ``amount_fen`` at ``rate_ppm``, rounded half up to the fen (integers only)."""
    return (amount_fen * rate_ppm + 500_000) // 1_000_000


def _fit(text: str, width: int) -> bytes:
    """GBK text cut to ``width`` bytes on a character boundary, padded with spaces."""
    raw = text.encode("gbk")
    while len(raw) > width:
        text = text[:-1]
        raw = text.encode("gbk")
    return raw + b" " * (width - len(raw))


def pack_line(values: Mapping[str, str | int]) -> bytes:
    """One ZM line; amount columns take fen (int), signed ones a signed int (C = +, D = -)."""
    parts = []
    for column in ZM_COLUMNS:
        value = values.get(column.name, "")
        if column.kind is ColumnKind.AMOUNT:
            parts.append(f"{int(value):0{column.width}d}".encode("ascii"))
        elif column.kind is ColumnKind.SIGNED:
            amount = int(value)
            sign = "C" if amount >= 0 else "D"
            parts.append(f"{sign}{abs(amount):0{column.width - 1}d}".encode("ascii"))
        else:
            parts.append(_fit(str(value), column.width))
    return b" ".join(parts)


def _row(txn: SimTxn, *, settle: int, fee: int) -> dict[str, str | int]:
    assert txn.done_at is not None
    done = beijing(txn.done_at)
    orig = txn.orig
    return {
        "txn_code": TXN_CODES[txn.txn_type],
        "acq_ins_code": ACQUIRER,
        "fwd_ins_code": ACQUIRER,
        "trace_no": txn.trace_no,
        "trace_time": f"{done:%m%d%H%M%S}",
        "acc_no": ACC_NO,
        "txn_amt": txn.amount_fen,
        "mcc": "5541",  # service stations
        "term_type": "08",
        "query_id": txn.query_id,
        "order_id": txn.order_id,
        "pay_card_type": "01",
        "mer_fee": -fee,  # D: charged to the merchant
        "settle_amt": settle,
        "txn_type": txn.txn_type.value,
        "txn_sub_type": "01" if txn.txn_type is TxnType.CONSUME else "00",
        "biz_type": "000201",
        "orig_query_id": orig.query_id if orig else "",
        "mer_id": txn.mer_id,
        "mer_abbr": MERCHANT_ABBR,
        "reserved": txn.reserved,
        "orig_order_id": orig.order_id if orig else "",
        "settle_date": f"{clearing_date(txn.done_at):%m%d}",
    }


def zm_lines(txns: Iterable[SimTxn], day: date) -> list[bytes]:
    """The clearing day's lines of these transactions, amounts and fees from their trades
    in the ledger: a completion (or consume) row with the trade's fee, and a negative row per
    refund with the fee it gave back. Pre-authorizations and their cancels move no money and
    have no row."""
    lines: list[tuple[float, bytes]] = []
    for txn in txns:
        if txn.resp_code != "00" or txn.done_at is None or clearing_date(txn.done_at) != day:
            continue
        trade = txn.trade
        if txn.txn_type in (TxnType.CONSUME, TxnType.PREAUTH_COMPLETE):
            row = _row(txn, settle=txn.amount_fen, fee=trade.fee_mfen // 1000)
        elif txn.txn_type in (TxnType.REFUND, TxnType.PREAUTH_COMPLETE_CANCEL):
            refund = trade.refunds[txn.order_id]
            row = _row(txn, settle=-refund.amount_fen, fee=-(refund.fee_mfen // 1000))
        else:
            continue
        lines.append((txn.done_at, pack_line(row)))
    return [line for _, line in sorted(lines, key=lambda item: item[0])]


def file_name(mer_id: str, day: date) -> str:
    return f"INN{day:%y%m%d}88ZM_{mer_id}"


def file_content(files: Mapping[str, bytes]) -> str:
    """``fileContent``: base64 of the DEFLATE (zlib) stream of a zip of ``files``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(zlib.compress(buffer.getvalue())).decode("ascii")
