"""UnionPay reconciliation files (txnType 76): unpacking and the ZM transaction-detail layout.

``fileContent`` in a 76 reply is base64 of a DEFLATE (zlib) stream of a zip. The zip holds one
file per report; the transaction detail is the ``ZM`` file (``INN<yyMMdd>88ZM_<merId>``; the
``ZME`` error file and others are skipped). ZM files are GBK, one transaction per line (CRLF),
FIXED WIDTH IN BYTES with one space between fields. Text fields are left-aligned and padded
with spaces, amounts right-aligned and zero-padded, in fen. Slicing must be done on the bytes:
a merchant short name such as ``中石化加油站`` is 6 characters but 12 bytes, and slicing the
decoded text would shift every field after it.

There is no published fixture for this project, so the layout below is ours, modelled on
UnionPay's ZM file (same field names, widths and C/D signed amounts). It is the one table both
this parser and the simulator's writer use; check it against the current UnionPay document for
production.

=====  ===================  =====  =====  =========================================
 No.   field                 byte  width  content
=====  ===================  =====  =====  =========================================
  1    交易代码 txn_code         0      3  S22 consume, S30 completion, S33 refund,
                                           S32 completion cancel (informational)
  2    代理机构标识码             4     11
  3    发送机构标识码            16     11
  4    系统跟踪号 trace_no       28      6
  5    交易传输时间 trace_time   35     10  MMDDhhmmss, Beijing time
  6    主账号 acc_no            46     19  masked card number
  7    交易金额 txn_amt         66     12  fen, unsigned
  8    商户类别 mcc             79      4
  9    终端类型                 84      2
 10    查询流水号 query_id      87     21  UnionPay's queryId
 11    商户订单号 order_id     109     40  the transaction's own orderId
 12    支付卡类型              150      2
 13    原始交易系统跟踪号       153      6
 14    原始交易日期时间         160     10
 15    商户手续费 mer_fee      171     13  ``D`` + 12 digits: fee charged to the merchant;
                                           ``C``: fee given back (a refund)
 16    结算金额 settle_amt     185     13  ``C``: credited to the merchant; ``D``: debited
 17    交易类型 txn_type       199      2  ACP txnType: 01/03 payments, 04/33 refunds
 18    交易子类                202      2
 19    业务类型                205      6
 20    原交易查询流水号         212     21  origQryId of a follow-up
 21    商户代码 mer_id         234     15
 22    商户简称 mer_abbr       250     40  GBK, multi-byte
 23    商户自定义域 reserved    291     40  reqReserved: the switch's hold/payment key
 24    原始交易订单号          332     40  orderId of the original transaction
 25    清算日期 settle_date    373      4  MMDD
=====  ===================  =====  =====  =========================================

A line is 377 bytes. UnionPay's clearing day turns at 23:00 Beijing time, so a row's transfer
time can be on the calendar day before its clearing date (and, in a 1 January file, in the
previous year); the booking time keeps the transfer time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import io
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from channels.model import Bill, BillKind, BillRow, Provider

from .errors import AcpError

__all__ = [
    "ZM_COLUMNS",
    "ZM_LINE_BYTES",
    "Column",
    "ColumnKind",
    "parse_file_content",
    "parse_zm",
    "split_line",
    "unpack_file_content",
]

MAX_UNPACKED_BYTES = 256 * 1024 * 1024
_ZM_NAME = re.compile(r"\d\dZM_[0-9A-Za-z]+$")


class ColumnKind(enum.Enum):
    TEXT = "text"  # GBK text, left-aligned, space-padded
    AMOUNT = "amount"  # unsigned fen, zero-padded
    SIGNED = "signed"  # C/D + 12 digits of fen


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    offset: int  # in bytes
    width: int  # in bytes
    kind: ColumnKind = ColumnKind.TEXT


_T, _A, _S = ColumnKind.TEXT, ColumnKind.AMOUNT, ColumnKind.SIGNED
ZM_COLUMNS: tuple[Column, ...] = (
    Column("txn_code", 0, 3),
    Column("acq_ins_code", 4, 11),
    Column("fwd_ins_code", 16, 11),
    Column("trace_no", 28, 6),
    Column("trace_time", 35, 10),
    Column("acc_no", 46, 19),
    Column("txn_amt", 66, 12, _A),
    Column("mcc", 79, 4),
    Column("term_type", 84, 2),
    Column("query_id", 87, 21),
    Column("order_id", 109, 40),
    Column("pay_card_type", 150, 2),
    Column("orig_trace_no", 153, 6),
    Column("orig_trace_time", 160, 10),
    Column("mer_fee", 171, 13, _S),
    Column("settle_amt", 185, 13, _S),
    Column("txn_type", 199, 2),
    Column("txn_sub_type", 202, 2),
    Column("biz_type", 205, 6),
    Column("orig_query_id", 212, 21),
    Column("mer_id", 234, 15),
    Column("mer_abbr", 250, 40),
    Column("reserved", 291, 40),
    Column("orig_order_id", 332, 40),
    Column("settle_date", 373, 4),
)
ZM_LINE_BYTES = ZM_COLUMNS[-1].offset + ZM_COLUMNS[-1].width

KIND_BY_TXN_TYPE: Mapping[str, BillKind] = {
    "01": BillKind.PAYMENT,
    "03": BillKind.PAYMENT,
    "04": BillKind.REFUND,
    "33": BillKind.REFUND,
}


def _inflate(data: bytes) -> bytes:
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # zlib stream; raw deflate as a fallback
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, MAX_UNPACKED_BYTES)
        except zlib.error:
            continue
        if inflater.unconsumed_tail:
            raise AcpError("bad_bill", f"fileContent inflates beyond {MAX_UNPACKED_BYTES} bytes")
        if inflater.eof:
            return out
    raise AcpError("bad_bill", "fileContent is not a complete DEFLATE stream")


def unpack_file_content(file_content: str) -> dict[str, bytes]:
    """``fileContent`` → the zip's files by name."""
    try:
        packed = base64.b64decode(file_content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AcpError("bad_bill", "fileContent is not base64") from exc
    unpacked = _inflate(packed)
    try:
        with zipfile.ZipFile(io.BytesIO(unpacked)) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            if sum(info.file_size for info in infos) > MAX_UNPACKED_BYTES:
                raise AcpError("bad_bill", "the zip's files are too large")
            return {info.filename: archive.read(info) for info in infos}
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise AcpError("bad_bill", f"fileContent is not a readable zip: {exc}") from exc


def split_line(line: bytes) -> dict[str, str]:
    """One ZM line → its fields, sliced as bytes and then decoded from GBK, stripped."""
    if len(line) != ZM_LINE_BYTES:
        raise AcpError("bad_bill", f"a ZM line is {ZM_LINE_BYTES} bytes, got {len(line)}")
    fields: dict[str, str] = {}
    for column in ZM_COLUMNS:
        raw = line[column.offset : column.offset + column.width]
        try:
            fields[column.name] = raw.decode("gbk").strip(" ")
        except UnicodeDecodeError as exc:
            raise AcpError(
                "bad_bill", f"{column.name}: not GBK (a field cut mid-character?)"
            ) from exc
    return fields


def _amount(text: str, column: str) -> int:
    if not re.fullmatch(r"[0-9]{12}", text):
        raise AcpError("bad_bill", f"{column} {text!r} is not 12 digits of fen")
    return int(text)


def _signed(text: str, column: str) -> int:
    if len(text) != 13 or text[0] not in "CD":
        raise AcpError("bad_bill", f"{column} {text!r} is not C/D + 12 digits")
    value = _amount(text[1:], column)
    return value if text[0] == "C" else -value


def _booked_at(trace_time: str, bill_date: date) -> datetime:
    if not re.fullmatch(r"[0-9]{10}", trace_time):
        raise AcpError("bad_bill", f"trace_time {trace_time!r} is not MMDDhhmmss")
    month = int(trace_time[:2])
    year = bill_date.year - 1 if month > bill_date.month else bill_date.year
    try:
        return datetime.strptime(f"{year}{trace_time}", "%Y%m%d%H%M%S")
    except ValueError as exc:
        raise AcpError("bad_bill", f"trace_time {trace_time!r} is not a date") from exc


def _row(fields: Mapping[str, str], bill_date: date) -> BillRow:
    kind = KIND_BY_TXN_TYPE.get(fields["txn_type"])
    if kind is None:
        raise AcpError("bad_bill", f"txn_type {fields['txn_type']!r} has no place in a ZM file")
    if fields["settle_date"] != f"{bill_date:%m%d}":
        raise AcpError("bad_bill", f"a row of clearing day {fields['settle_date']} in this file")
    txn_amt = _amount(fields["txn_amt"], "txn_amt")
    settled = _signed(fields["settle_amt"], "settle_amt")
    if abs(settled) != txn_amt or (settled < 0) != (kind is BillKind.REFUND):
        raise AcpError(
            "bad_bill", f"settle_amt {settled} disagrees with a {kind.value} of {txn_amt}"
        )
    fee_mfen = -_signed(fields["mer_fee"], "mer_fee") * 1000  # D (debit) = fee charged
    follow_up = fields["txn_type"] != "01"
    out_trade_no = fields["order_id"]
    if follow_up:
        out_trade_no = fields["reserved"] or fields["orig_order_id"] or out_trade_no
    return BillRow(
        kind=kind,
        booked_at=_booked_at(fields["trace_time"], bill_date),
        merchant_id=fields["mer_id"],
        out_trade_no=out_trade_no,
        provider_ref=fields["query_id"],
        amount_fen=settled,
        fee_mfen=fee_mfen,
        status="00",
        out_refund_no=fields["order_id"] if kind is BillKind.REFUND else None,
        order_amount_fen=txn_amt if kind is BillKind.PAYMENT else None,
    )


def parse_zm(data: bytes, bill_date: date) -> list[BillRow]:
    """All rows of one ZM file (bytes, as in the zip)."""
    rows = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.removesuffix(b"\r")
        if not line.strip():
            continue
        try:
            rows.append(_row(split_line(line), bill_date))
        except AcpError as exc:
            raise AcpError(exc.reason, f"line {number}: {exc.message}") from exc
    return rows


def parse_file_content(file_content: str, bill_date: date) -> Bill:
    """A 76 reply's ``fileContent`` → the day's Bill (ZM rows of every ZM file in the zip).

    ZM files carry no totals, so the Bill has no provider summary."""
    files = unpack_file_content(file_content)
    names = sorted(name for name in files if _ZM_NAME.search(name))
    if not names:
        raise AcpError("bad_bill", f"no ZM file in the zip ({sorted(files)})")
    rows = [row for name in names for row in parse_zm(files[name], bill_date)]
    return Bill(Provider.UNIONPAY, bill_date, tuple(rows), None)
