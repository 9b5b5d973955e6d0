"""The WeChat Pay trade bill (``/v3/bill/tradebill``, type ALL), parsed from bytes.

The file is CSV with CRLF line ends and an optional UTF-8 BOM; every data field starts with a
backtick (so spreadsheets keep long ids as text). The detail block has 27 columns in the
current layout and 24 in the legacy one (without 订单金额, 申请退款金额, 费率备注); a summary
header starting with 总交易单数 and one summary row close the file. Columns are found by their
header names, never by position, because the two layouts differ in the middle of the row.

Money is exact: yuan with 2 decimals → fen, fees with 5 decimals → milli-fen, ``0.60%`` →
ppm. The file's SHA1 (of the *uncompressed* bytes) must equal the ticket's ``hash_value``, and
the summary must agree with the rows; a file that fails either is refused rather than used for
reconciliation with a silent gap.
"""

from __future__ import annotations

import csv
import hashlib
import re
import zlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime

from channels.model import Bill, BillKind, BillRow, BillSummary, Provider
from channels.money import AmountError, decimal_to_units, parse_rate_ppm
from channels.wechatpay.errors import BillError
from channels.wechatpay.times import CST

__all__ = [
    "DETAIL_COLUMNS",
    "LEGACY_DETAIL_COLUMNS",
    "LEGACY_SUMMARY_COLUMNS",
    "SUMMARY_COLUMNS",
    "check_sha1",
    "load_tradebill",
    "parse_tradebill",
    "unpack",
]

DETAIL_COLUMNS = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
)  # fmt: skip
LEGACY_DETAIL_COLUMNS = DETAIL_COLUMNS[:24]
SUMMARY_COLUMNS = (
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额",
)  # fmt: skip
LEGACY_SUMMARY_COLUMNS = SUMMARY_COLUMNS[:5]

# older files name a few columns differently; map them onto the current names
_ALIASES: Mapping[str, str] = {
    "子商户号": "特约商户号",
    "代金券或立减优惠金额": "代金券金额",
    "企业红包退款金额": "充值券退款金额",
    "代金券或立减优惠退款金额": "充值券退款金额",
    "总交易额": "应结订单总金额",
    "总退款金额": "退款总金额",
    "总企业红包退款金额": "充值券退款总金额",
    "总代金券或立减优惠退款金额": "充值券退款总金额",
}
_REQUIRED = (
    "交易时间", "商户号", "微信订单号", "商户订单号", "交易状态", "应结订单金额",
    "商户退款单号", "退款金额", "退款状态", "手续费", "费率",
)  # fmt: skip
_SUMMARY_REQUIRED = ("总交易单数", "应结订单总金额", "退款总金额", "手续费总金额")
_LINE_END = re.compile(r"\r?\n")
_GZIP_MAGIC = b"\x1f\x8b"
MAX_BILL_BYTES = 512 * 1024 * 1024


def unpack(raw: bytes, max_bytes: int = MAX_BILL_BYTES) -> bytes:
    """Gunzip when the bytes are gzip (WeChat's ``tar_type=GZIP``), else return them. A gzip
    cut short is ``truncated_gzip``: the download broke, fetch it again."""
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    out: list[bytes] = []
    size, data = 0, raw
    while data:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, max_bytes - size + 1)
        except zlib.error as exc:
            raise BillError("bad_gzip", f"not a valid gzip stream: {exc}") from exc
        size += len(chunk)
        if size > max_bytes or inflater.unconsumed_tail:
            raise BillError("oversized", f"bill inflates beyond {max_bytes} bytes")
        if not inflater.eof:
            raise BillError("truncated_gzip", "gzip stream ends before its trailer")
        out.append(chunk)
        data = inflater.unused_data
    return b"".join(out)


def check_sha1(content: bytes, expected: str) -> None:
    actual = hashlib.sha1(content).hexdigest()
    if actual != expected.strip().lower():
        raise BillError("hash_mismatch", f"SHA1 {actual} differs from {expected[:40]!r}")


def _cells(line: str) -> list[str]:
    return next(csv.reader([line]))


def _field(cell: str) -> str:
    return cell[1:] if cell.startswith("`") else cell


def _names(header: Sequence[str]) -> dict[str, int]:
    return {_ALIASES.get(name.strip(), name.strip()): i for i, name in enumerate(header)}


def _money(text: str, places: int, what: str) -> int:
    try:
        return decimal_to_units(text or "0", places)
    except AmountError as exc:
        raise BillError("bad_amount", f"{what}: {exc}") from exc


class _Row:
    """One detail line, read by column name."""

    def __init__(self, names: Mapping[str, int], cells: Sequence[str], number: int) -> None:
        self.names, self.cells, self.number = names, cells, number

    def get(self, name: str) -> str:
        index = self.names.get(name)
        return "" if index is None else _field(self.cells[index]).strip()

    def fen(self, name: str) -> int:
        return _money(self.get(name), 2, f"line {self.number} {name}")

    def bill_row(self) -> BillRow:
        try:
            booked = datetime.strptime(self.get("交易时间"), "%Y-%m-%d %H:%M:%S")
        except ValueError as exc:
            raise BillError("bad_row", f"line {self.number}: bad 交易时间") from exc
        refund = self.get("交易状态") == "REFUND"
        rate = self.get("费率")
        try:
            rate_ppm = parse_rate_ppm(rate) if rate else None
        except AmountError as exc:
            raise BillError("bad_amount", f"line {self.number} 费率: {exc}") from exc
        out_refund_no = self.get("商户退款单号")
        return BillRow(
            kind=BillKind.REFUND if refund else BillKind.PAYMENT,
            booked_at=booked.replace(tzinfo=CST),
            merchant_id=self.get("商户号"),
            out_trade_no=self.get("商户订单号"),
            provider_ref=self.get("微信订单号"),
            amount_fen=-self.fen("退款金额") if refund else self.fen("应结订单金额"),
            fee_mfen=_money(self.get("手续费"), 5, f"line {self.number} 手续费"),
            status=(self.get("退款状态") or "REFUND") if refund else self.get("交易状态"),
            out_refund_no=out_refund_no if refund and out_refund_no not in ("", "0") else None,
            order_amount_fen=self.fen("订单金额")
            if "订单金额" in self.names and not refund
            else None,
            rate_ppm=rate_ppm,
        )


def _summary(header: Sequence[str], values: Sequence[str]) -> BillSummary:
    names = _names(header)
    missing = [name for name in _SUMMARY_REQUIRED if name not in names]
    if missing or len(values) != len(header):
        raise BillError("bad_layout", f"summary block: missing {missing} or wrong width")
    row = _Row(names, values, 0)
    try:
        count = int(row.get("总交易单数"))
    except ValueError as exc:
        raise BillError("bad_amount", "总交易单数 is not a number") from exc
    return BillSummary(
        count=count,
        settled_fen=row.fen("应结订单总金额"),
        refund_fen=row.fen("退款总金额"),
        fee_mfen=_money(row.get("手续费总金额"), 5, "手续费总金额"),
        order_total_fen=row.fen("订单总金额") if "订单总金额" in names else None,
    )


def _check_totals(rows: Sequence[BillRow], summary: BillSummary) -> None:
    payments = [r for r in rows if r.kind is BillKind.PAYMENT]
    computed = (
        len(rows),
        sum(r.amount_fen for r in payments),
        -sum(r.amount_fen for r in rows if r.kind is BillKind.REFUND),
        sum(r.fee_mfen for r in rows),
    )
    stated = (summary.count, summary.settled_fen, summary.refund_fen, summary.fee_mfen)
    if computed != stated:
        raise BillError("summary_mismatch", f"rows give {computed}, summary says {stated}")


def parse_tradebill(content: bytes, bill_date: date) -> Bill:
    """Parse an uncompressed ALL bill (27- or 24-column layout)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillError("bad_encoding", "bill is not UTF-8") from exc
    lines = _LINE_END.split(text.rstrip("\r\n"))
    header = [cell.strip() for cell in _cells(lines[0])] if lines and lines[0] else []
    names = _names(header)
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise BillError("bad_layout", f"detail header lacks {', '.join(missing)}")
    rows: list[BillRow] = []
    summary: BillSummary | None = None
    for number, line in enumerate(lines[1:], start=2):
        cells = _cells(line) if line else []
        if cells and cells[0].strip() == "总交易单数":
            if number != len(lines) - 1:
                raise BillError("bad_layout", "the summary block must end the file")
            summary = _summary(cells, _cells(lines[number]))
            break
        if len(cells) != len(header):
            raise BillError("bad_row", f"line {number} has {len(cells)} of {len(header)} fields")
        rows.append(_Row(names, cells, number).bill_row())
    if summary is None:
        raise BillError("truncated", "the summary block is missing")
    _check_totals(rows, summary)
    return Bill(Provider.WECHATPAY, bill_date, tuple(rows), summary)


def load_tradebill(raw: bytes, bill_date: date, *, sha1: str | None) -> Bill:
    """Download bytes → Bill: gunzip, check the ticket's SHA1 of the plain file, parse."""
    content = unpack(raw)
    if sha1 is not None:
        check_sha1(content, sha1)
    return parse_tradebill(content, bill_date)
