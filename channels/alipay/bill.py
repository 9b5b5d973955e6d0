"""Alipay's trade bill (``bill_type=trade``): a zip of GBK CSVs → ``channels.model.Bill``.

The archive comes from Windows tooling: entry names are GBK bytes without the zip's UTF-8
flag (Python's zipfile shows them as cp437 mojibake), the files are GBK, cells carry trailing
tabs (Excel would otherwise eat long numbers like trade_no), refund rows are negative, and the
detail rows sit between two ``#---业务明细列表---`` marker lines among ``#`` comment lines.
Columns are found by their header names, because Alipay has added columns over the years.

Signs: the bill shows the service fee from the merchant's side (``-1.80`` charged, ``0.26``
returned with a refund); ``BillRow.fee_mfen`` is the provider's fee, positive when charged, so
it is the bill's figure negated, in milli-fen (1/100000 yuan).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from channels.alipay.errors import BillFormatError
from channels.alipay.requests import CHINA
from channels.model import Bill, BillKind, BillRow, BillSummary, Provider
from channels.money import AmountError, decimal_to_units, yuan_to_fen

__all__ = [
    "BUSINESS_TYPES",
    "DETAIL_MARKER",
    "account_of",
    "no_bill",
    "parse_bill_zip",
    "parse_detail",
    "read_entries",
]

DETAIL_MARKER = "业务明细列表"
END_MARKER = "业务明细列表结束"
ACCOUNT_SUFFIX = "0156"  # the bill's account is the PID plus the CNY account suffix
BUSINESS_TYPES: Mapping[str, BillKind] = {"交易": BillKind.PAYMENT, "退款": BillKind.REFUND}

COL_TRADE_NO = "支付宝交易号"
COL_OUT_TRADE_NO = "商户订单号"
COL_TYPE = "业务类型"
COL_FINISHED = "完成时间"
COL_ORDER_AMOUNT = "订单金额(元)"
COL_RECEIVED = "商家实收(元)"
COL_REQUEST_NO = "退款批次号/请求号"
COL_FEE = "服务费(元)"
_REQUIRED = (
    COL_TRADE_NO,
    COL_OUT_TRADE_NO,
    COL_TYPE,
    COL_FINISHED,
    COL_ORDER_AMOUNT,
    COL_RECEIVED,
    COL_REQUEST_NO,
    COL_FEE,
)

_ACCOUNT = re.compile(r"#\s*账号[:\uff1a]\s*\[(\d+)\]")
_START = re.compile(r"起始日期[:\uff1a]\s*\[(\d{4})年(\d{1,2})月(\d{1,2})日")
_TRADE_TOTAL = re.compile(r"#\s*交易合计[:\uff1a]\s*(\d+)笔[,\uff0c]\s*商家实收共\s*(-?[\d.]+)元")
_REFUND_TOTAL = re.compile(
    r"#\s*退款合计[:\uff1a]\s*(\d+)笔[,\uff0c]\s*商家实收退款共\s*(-?[\d.]+)元"
)
_UTF8_FLAG = 0x800


@dataclass(frozen=True, slots=True)
class _Totals:
    trades: int
    received_fen: int
    refunds: int
    refunded_fen: int  # positive


def no_bill(bill_date: date) -> Bill:
    """Alipay has no bill for the day (``isp.bill_not_exist``): no rows and no provider
    totals, which reconciliation can tell apart from a bill that lists nothing."""
    return Bill(provider=Provider.ALIPAY, bill_date=bill_date, rows=(), summary=None)


def read_entries(data: bytes) -> dict[str, bytes]:
    """The archive's files by their real names (GBK names recovered from zipfile's cp437)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries: dict[str, bytes] = {}
            for info in archive.infolist():
                if info.is_dir():
                    continue
                entries[_entry_name(info)] = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise BillFormatError("bad_zip", f"bill archive unreadable: {exc}") from exc
    return entries


def parse_bill_zip(data: bytes, bill_date: date) -> Bill:
    """The bill archive → rows from the detail file, totals from its ``#`` lines and the fee
    total from the summary file (or the rows' fees when the summary file is missing)."""
    detail_text: str | None = None
    summary_text: str | None = None
    for name, content in read_entries(data).items():
        text = _decode(content, name)
        if name.endswith("(汇总).csv") or text.startswith("#支付宝业务汇总查询"):
            summary_text = text
        elif name.endswith(".csv") and DETAIL_MARKER in text:
            detail_text = text
    if detail_text is None:
        raise BillFormatError("no_detail_file", "the archive holds no 业务明细 file")
    rows, totals = parse_detail(detail_text, bill_date)
    if totals is None:
        return Bill(Provider.ALIPAY, bill_date, rows, None)
    fee = _summary_fee(summary_text) if summary_text is not None else None
    summary = BillSummary(
        count=totals.trades + totals.refunds,
        settled_fen=totals.received_fen,
        refund_fen=totals.refunded_fen,
        fee_mfen=fee if fee is not None else sum(row.fee_mfen for row in rows),
    )
    return Bill(Provider.ALIPAY, bill_date, rows, summary)


def account_of(text: str) -> str:
    """The merchant's PID from the ``#账号`` line ("" when the line is absent)."""
    match = _ACCOUNT.search(text)
    if match is None:
        return ""
    account = match.group(1)
    if len(account) == 20 and account.endswith(ACCOUNT_SUFFIX):
        return account[:16]
    return account


def parse_detail(text: str, bill_date: date) -> tuple[tuple[BillRow, ...], _Totals | None]:
    lines = text.lstrip("\ufeff").splitlines()
    _check_date(lines, bill_date)
    merchant_id = account_of(text)
    start = next((i for i, ln in enumerate(lines) if _is_marker(ln, start=True)), None)
    if start is None:
        raise BillFormatError("no_marker", "no 业务明细列表 marker line")
    end = next((i for i in range(start + 1, len(lines)) if _is_marker(lines[i], start=False)), None)
    if end is None:
        raise BillFormatError("truncated", "the detail list has no end marker")
    table = [row for row in csv.reader(lines[start + 1 : end]) if any(c.strip() for c in row)]
    if not table:
        raise BillFormatError("no_header", "the detail list has no header line")
    columns = _columns(table[0])
    rows = tuple(_row(cells, columns, merchant_id, n) for n, cells in enumerate(table[1:], 1))
    return rows, _totals(lines[end + 1 :])


def _row(cells: Sequence[str], columns: Mapping[str, int], merchant_id: str, n: int) -> BillRow:
    values = [cell.strip() for cell in cells]
    if len(values) < len(columns) or any(values[len(columns) :]):
        raise BillFormatError("bad_row", f"detail row {n} has {len(values)} cells")

    def cell(name: str) -> str:
        return values[columns[name]]

    kind = BUSINESS_TYPES.get(cell(COL_TYPE))
    if kind is None:
        raise BillFormatError("bad_row", f"detail row {n}: unknown 业务类型 {cell(COL_TYPE)!r}")
    try:
        booked = datetime.strptime(cell(COL_FINISHED), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
        amount = yuan_to_fen(cell(COL_RECEIVED))
        order_amount = yuan_to_fen(cell(COL_ORDER_AMOUNT))
        fee = -decimal_to_units(cell(COL_FEE) or "0", 5)
    except (ValueError, AmountError) as exc:
        raise BillFormatError("bad_row", f"detail row {n}: {exc}") from exc
    if (kind is BillKind.REFUND) != (amount < 0) and amount != 0:
        raise BillFormatError("bad_row", f"detail row {n}: amount sign does not fit its type")
    request_no = cell(COL_REQUEST_NO)
    if kind is BillKind.REFUND and not request_no:
        raise BillFormatError("bad_row", f"detail row {n}: a refund without its request number")
    return BillRow(
        kind=kind,
        booked_at=booked,
        merchant_id=merchant_id,
        out_trade_no=cell(COL_OUT_TRADE_NO),
        provider_ref=cell(COL_TRADE_NO),
        amount_fen=amount,
        fee_mfen=fee,
        status=cell(COL_TYPE),
        out_refund_no=request_no if kind is BillKind.REFUND else None,
        order_amount_fen=order_amount,
    )


def _columns(header: Sequence[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        key = _normalise(name)
        if key and key not in columns:
            columns[key] = index
    missing = [name for name in _REQUIRED if name not in columns]
    if missing:
        raise BillFormatError("bad_header", f"detail header lacks {', '.join(missing)}")
    return columns


def _normalise(name: str) -> str:
    """Header names with full-width parentheses and stray padding made comparable."""
    return name.strip().replace("\uff08", "(").replace("\uff09", ")").replace(" ", "")


def _is_marker(line: str, *, start: bool) -> bool:
    if not line.startswith("#"):
        return False
    return (END_MARKER in line) != start and DETAIL_MARKER in line


def _totals(lines: Sequence[str]) -> _Totals | None:
    text = "\n".join(lines)
    trades = _TRADE_TOTAL.search(text)
    refunds = _REFUND_TOTAL.search(text)
    if trades is None or refunds is None:
        return None
    try:
        return _Totals(
            trades=int(trades.group(1)),
            received_fen=yuan_to_fen(trades.group(2)),
            refunds=int(refunds.group(1)),
            refunded_fen=abs(yuan_to_fen(refunds.group(2))),
        )
    except AmountError as exc:
        raise BillFormatError("bad_totals", f"totals line: {exc}") from exc


def _summary_fee(text: str) -> int | None:
    """The 合计 row's 服务费 of the summary file, as the provider's fee in milli-fen."""
    table = [row for row in csv.reader(text.lstrip("\ufeff").splitlines()) if row]
    header = next((r for r in table if not r[0].startswith("#")), None)
    if header is None:
        return None
    names = [_normalise(h) for h in header]
    if COL_FEE not in names:
        return None
    index = names.index(COL_FEE)
    for row in table:
        if row[0].strip() == "合计" and len(row) > index:
            try:
                return -decimal_to_units(row[index].strip() or "0", 5)
            except AmountError as exc:
                raise BillFormatError("bad_totals", f"summary 合计: {exc}") from exc
    return None


def _check_date(lines: Sequence[str], bill_date: date) -> None:
    for line in lines[:8]:
        match = _START.search(line)
        if match is not None:
            found = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
            if found != bill_date:
                raise BillFormatError("wrong_date", f"bill starts {found}, expected {bill_date}")
            return


def _entry_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except UnicodeError:
        return info.filename


def _decode(content: bytes, name: str) -> str:
    """GB18030 decodes every GBK file and is what Alipay's newer exports use."""
    try:
        return content.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise BillFormatError("bad_encoding", f"{name} is not GBK text") from exc
