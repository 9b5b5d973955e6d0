"""The simulated Alipay trade bill: the real archive layout, built from bill lines, sans-IO.

What Alipay's download gives a merchant, reproduced faithfully because the parser must survive
it: a zip whose entry names are GBK bytes *without* the zip UTF-8 flag (so they are written
here by hand — Python's zipfile would flag them as UTF-8), two GBK CSV files with CRLF lines,
``#`` comment lines around the detail table, cells with trailing tabs, refunds as negative rows,
and fees from the merchant's side (``-1.80`` charged, ``0.26`` returned). Fees are 0.6 %,
rounded half up to the fen, per payment and per refund, as Alipay charges them.
"""

from __future__ import annotations

import csv
import io
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from channels.alipay.requests import CHINA
from channels.money import fen_to_yuan

__all__ = [
    "DETAIL_HEADER",
    "FEE_RATE_PPM",
    "BillLine",
    "build_bill_zip",
    "detail_csv",
    "fee_fen",
    "gbk_zip",
    "summary_csv",
]

FEE_RATE_PPM = 6000  # 0.6 %
ACCOUNT_SUFFIX = "0156"

# Alipay writes full-width punctuation: parentheses around 元 in the headers, colons and
# commas in the comment lines.
YUAN = "\uff08元\uff09"
COLON = "\uff1a"
COMMA = "\uff0c"
DETAIL_HEADER = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    f"订单金额{YUAN}",
    f"商家实收{YUAN}",
    f"支付宝红包{YUAN}",
    f"集分宝{YUAN}",
    f"支付宝优惠{YUAN}",
    f"商家优惠{YUAN}",
    f"券核销金额{YUAN}",
    "券名称",
    f"商家红包消费金额{YUAN}",
    f"卡消费金额{YUAN}",
    "退款批次号/请求号",
    f"服务费{YUAN}",
    f"分润{YUAN}",
    "备注",
]
SUMMARY_HEADER = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    f"订单金额{YUAN}",
    f"商家实收{YUAN}",
    f"服务费{YUAN}",
    f"实收净额{YUAN}",
]
_LIST_START = "#" + "-" * 41 + "业务明细列表" + "-" * 40
_LIST_END = "#" + "-" * 41 + "业务明细列表结束" + "-" * 36


def fee_fen(amount_fen: int, rate_ppm: int = FEE_RATE_PPM) -> int:
    """The service fee on an amount, half up to the fen (300.00 → 1.80, 256.40 → 1.54)."""
    return (amount_fen * rate_ppm + 500_000) // 1_000_000


@dataclass(frozen=True, slots=True)
class BillLine:
    """One detail row. Amounts are signed as the bill shows them: a refund's are negative,
    the fee is negative when charged and positive when returned."""

    refund: bool
    trade_no: str
    out_trade_no: str
    subject: str
    created_at: float  # Unix seconds
    finished_at: float  # payment time, or the refund's time
    order_fen: int
    received_fen: int
    fee_fen: int
    request_no: str = ""
    buyer: str = ""
    store_id: str = ""
    terminal_id: str = ""


def build_bill_zip(
    seller_id: str, bill_date: date, lines: Sequence[BillLine], exported_at: float
) -> bytes:
    """The archive Alipay's download URL serves for one merchant and day."""
    account = seller_id + ACCOUNT_SUFFIX
    stem = f"{account}_{bill_date:%Y%m%d}"
    exported = datetime.fromtimestamp(exported_at, CHINA)
    return gbk_zip(
        [
            (f"{stem}_业务明细.csv", detail_csv(account, bill_date, lines, exported)),
            (f"{stem}_业务明细(汇总).csv", summary_csv(account, bill_date, lines, exported)),
        ],
        exported,
    )


def detail_csv(
    account: str, bill_date: date, lines: Sequence[BillLine], exported: datetime
) -> bytes:
    out = io.StringIO()
    out.write("#支付宝业务明细查询\r\n")
    out.write(f"#账号{COLON}[{account}]\r\n")
    out.write(_period(bill_date))
    out.write(_LIST_START + "\r\n")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(DETAIL_HEADER)
    for line in sorted(lines, key=lambda ln: (ln.finished_at, ln.refund)):
        writer.writerow(
            [
                line.trade_no + "\t",
                line.out_trade_no + "\t",
                "退款" if line.refund else "交易",
                line.subject,
                _time(line.created_at),
                _time(line.finished_at),
                line.store_id,
                "",
                "",
                line.terminal_id,
                line.buyer,
                fen_to_yuan(line.order_fen),
                fen_to_yuan(line.received_fen),
                *["0.00"] * 5,
                "",
                "0.00",
                "0.00",
                line.request_no + "\t",
                fen_to_yuan(line.fee_fen),
                "0.00",
                "",
            ]
        )
    out.write(_LIST_END + "\r\n")
    trades = [ln for ln in lines if not ln.refund]
    refunds = [ln for ln in lines if ln.refund]
    received = fen_to_yuan(sum(ln.received_fen for ln in trades))
    refunded = fen_to_yuan(sum(ln.received_fen for ln in refunds))
    out.write(
        f"#交易合计{COLON}{len(trades)}笔{COMMA}商家实收共{received}元{COMMA}商家优惠共0.00元\r\n"
    )
    out.write(
        f"#退款合计{COLON}{len(refunds)}笔{COMMA}商家实收退款共{refunded}元{COMMA}商家优惠退款共0.00元\r\n"
    )
    out.write(f"#导出时间{COLON}[{exported:%Y年%m月%d日 %H:%M:%S}]\r\n")
    return out.getvalue().encode("gbk")


def summary_csv(
    account: str, bill_date: date, lines: Sequence[BillLine], exported: datetime
) -> bytes:
    """Totals per store, then 合计: received is net of refunds, fees net of returned fees."""
    out = io.StringIO()
    out.write("#支付宝业务汇总查询\r\n")
    out.write(f"#账号{COLON}[{account}]\r\n")
    out.write(_period(bill_date))
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(SUMMARY_HEADER)
    stores = sorted({ln.store_id for ln in lines})
    for store in stores:
        writer.writerow(_summary_row(store, "", [ln for ln in lines if ln.store_id == store]))
    writer.writerow(_summary_row("合计", "", list(lines)))
    out.write(f"#导出时间{COLON}[{exported:%Y年%m月%d日 %H:%M:%S}]\r\n")
    return out.getvalue().encode("gbk")


def _summary_row(store: str, name: str, lines: Iterable[BillLine]) -> list[str]:
    chosen = list(lines)
    received = sum(ln.received_fen for ln in chosen)
    fees = sum(ln.fee_fen for ln in chosen)
    return [
        store,
        name,
        str(sum(1 for ln in chosen if not ln.refund)),
        str(sum(1 for ln in chosen if ln.refund)),
        fen_to_yuan(sum(ln.order_fen for ln in chosen)),
        fen_to_yuan(received),
        fen_to_yuan(fees),
        fen_to_yuan(received + fees),
    ]


def gbk_zip(entries: Sequence[tuple[str, bytes]], when: datetime) -> bytes:
    """A deflated zip whose names are GBK bytes with the UTF-8 flag clear, as Windows tools
    write them."""
    dos_time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    dos_date = ((when.year - 1980) << 9) | (when.month << 5) | when.day
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        raw_name = name.encode("gbk")
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        payload = packer.compress(data) + packer.flush()
        crc = zlib.crc32(data)
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            0,
            8,
            dos_time,
            dos_date,
            crc,
            len(payload),
            len(data),
            len(raw_name),
            0,
        )
        out += raw_name + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            dos_time,
            dos_date,
            crc,
            len(payload),
            len(data),
            len(raw_name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw_name
    directory_at = len(out)
    out += central
    count = len(entries)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), directory_at, 0)
    return bytes(out)


def _period(bill_date: date) -> str:
    end = bill_date + timedelta(days=1)
    start_text = f"#起始日期{COLON}[{bill_date:%Y年%m月%d日} 00:00:00]"
    return f"{start_text}   终止日期{COLON}[{end:%Y年%m月%d日} 00:00:00]\r\n"


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, CHINA).strftime("%Y-%m-%d %H:%M:%S")
