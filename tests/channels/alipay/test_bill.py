"""The trade bill parser: the shared fixture's figures and the layout's traps (callback case 31)."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import date, datetime
from pathlib import Path

import pytest

from channels.alipay import BillFormatError, no_bill, parse_bill_zip, read_entries
from channels.alipay.requests import CHINA
from channels.model import BillKind, Provider
from channels.sim.alipay_bill import (
    DETAIL_HEADER,
    BillLine,
    build_bill_zip,
    detail_csv,
    fee_fen,
    gbk_zip,
)

FIXTURE = Path("/work/shared/fixtures/bills/alipay_20881234567890120156_20261120.csv.zip")
DAY = date(2026, 11, 20)
SELLER = "2088123456789012"


def at(hour: int, minute: int) -> float:
    return datetime(2026, 11, 20, hour, minute, tzinfo=CHINA).timestamp()


LINES = [
    BillLine(False, "T1", "FS1", "92#汽油, 300元", at(8, 2), at(8, 3), 30000, 30000, -180),
    BillLine(
        False, "T2", "FS2", "95#汽油", at(9, 15), at(9, 21), 25640, 25640, -154, store_id="S3"
    ),
    BillLine(True, "T1", "FS1", "92#汽油, 300元", at(8, 2), at(8, 40), -4320, -4320, 26, "FS1-R1"),
]


def test_fixture_gives_the_readme_figures() -> None:
    bill = parse_bill_zip(FIXTURE.read_bytes(), DAY)
    assert (bill.provider, bill.bill_date) == (Provider.ALIPAY, DAY)
    trades = [r for r in bill.rows if r.kind is BillKind.PAYMENT]
    refunds = [r for r in bill.rows if r.kind is BillKind.REFUND]
    assert [(r.out_trade_no, r.amount_fen) for r in trades] == [
        ("FS20261120000101", 30000),
        ("FS20261120000102", 25640),
    ]
    assert [(r.out_trade_no, r.out_refund_no, r.amount_fen, r.fee_mfen) for r in refunds] == [
        ("FS20261120000101", "FS20261120000101-R1", -4320, -26000)
    ]
    assert [r.fee_mfen for r in trades] == [180000, 154000]
    assert sum(r.amount_fen for r in bill.rows) == 51320  # merchant received
    assert sum(r.fee_mfen for r in bill.rows) == 308000  # service fees 3.08
    assert (
        sum(r.amount_fen for r in bill.rows) - sum(r.fee_mfen for r in bill.rows) // 1000 == 51012
    )
    assert bill.summary is not None
    assert (bill.summary.count, bill.summary.settled_fen, bill.summary.refund_fen) == (
        3,
        55640,
        4320,
    )
    assert bill.summary.fee_mfen == 308000
    assert {r.merchant_id for r in bill.rows} == {SELLER}
    assert trades[0].provider_ref == "2026112022001400001000000001"  # the trailing tab is gone
    assert refunds[0].booked_at == datetime(2026, 11, 20, 8, 40, tzinfo=CHINA)


def test_fixture_entry_names_are_gbk_without_the_utf8_flag() -> None:
    with zipfile.ZipFile(FIXTURE) as archive:
        assert all(not info.flag_bits & 0x800 for info in archive.infolist())
    names = sorted(read_entries(FIXTURE.read_bytes()))
    assert names == [
        "20881234567890120156_20261120_业务明细(汇总).csv",
        "20881234567890120156_20261120_业务明细.csv",
    ]


def test_simulator_bill_round_trips_through_the_parser() -> None:
    data = build_bill_zip(SELLER, DAY, LINES, at(23, 0) + 7 * 3600)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert all(not info.flag_bits & 0x800 for info in archive.infolist())
    bill = parse_bill_zip(data, DAY)
    assert [(r.kind, r.out_trade_no, r.amount_fen, r.fee_mfen) for r in bill.rows] == [
        (BillKind.PAYMENT, "FS1", 30000, 180000),
        (BillKind.REFUND, "FS1", -4320, -26000),  # rows come in the order they were booked
        (BillKind.PAYMENT, "FS2", 25640, 154000),
    ]
    assert bill.summary is not None
    assert (bill.summary.settled_fen, bill.summary.refund_fen, bill.summary.fee_mfen) == (
        55640,
        4320,
        308000,
    )


def test_fees_are_half_up_to_the_fen() -> None:
    assert [fee_fen(30000), fee_fen(25640), fee_fen(4320), fee_fen(83)] == [180, 154, 26, 0]
    assert fee_fen(84) == 1  # 0.504 fen


def shuffled_detail(extra_column: bool) -> bytes:
    """A detail file whose columns are in another order (and one Alipay added later)."""
    header = list(reversed(DETAIL_HEADER)) + (["新增列"] if extra_column else [])
    original = detail_csv(SELLER + "0156", DAY, LINES, datetime(2026, 11, 21, 6, 0)).decode("gbk")
    lines = original.split("\r\n")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("支付宝交易号"))
    rows = list(csv.reader(lines[start + 1 : start + 4]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(list(reversed(row)) + (["x"] if extra_column else []))
    text = "\r\n".join(lines[:start]) + "\r\n" + out.getvalue() + "\r\n".join(lines[start + 4 :])
    return text.encode("gbk")


@pytest.mark.parametrize("extra_column", [False, True])
def test_columns_are_found_by_header_name(extra_column: bool) -> None:
    data = gbk_zip([("x_业务明细.csv", shuffled_detail(extra_column))], datetime(2026, 11, 21))
    bill = parse_bill_zip(data, DAY)
    assert [(r.out_trade_no, r.amount_fen) for r in bill.rows] == [
        ("FS1", 30000),
        ("FS1", -4320),
        ("FS2", 25640),
    ]
    assert bill.summary is not None
    assert bill.summary.fee_mfen == 308000  # no summary file: the rows' fees


def test_a_day_with_nothing_in_it_is_an_empty_bill_with_zero_totals() -> None:
    data = build_bill_zip(SELLER, DAY, [], at(23, 59))
    bill = parse_bill_zip(data, DAY)
    assert bill.rows == ()
    assert bill.summary is not None
    assert (bill.summary.count, bill.summary.settled_fen, bill.summary.fee_mfen) == (0, 0, 0)


def test_a_day_without_a_bill_has_no_rows_and_no_totals() -> None:
    bill = no_bill(DAY)
    assert (bill.rows, bill.summary, bill.provider) == ((), None, Provider.ALIPAY)


def test_utf8_flagged_names_are_read_as_well() -> None:
    content = detail_csv(SELLER + "0156", DAY, LINES, datetime(2026, 11, 21))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x_业务明细.csv", content)
    assert len(parse_bill_zip(buffer.getvalue(), DAY).rows) == 3


def replace_in_detail(old: str, new: str) -> bytes:
    text = detail_csv(SELLER + "0156", DAY, LINES, datetime(2026, 11, 21)).decode("gbk")
    assert old in text
    return gbk_zip([("x_业务明细.csv", text.replace(old, new, 1).encode("gbk"))], datetime.now())


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("业务明细列表结束", "其他", "truncated"),
        ('交易,"92#', '冻结,"92#', "bad_row"),
        ("300.00,300.00", "300.001,300.001", "bad_row"),
        ("2026-11-20 08:03:00", "20.11.2026", "bad_row"),
        ("商户订单号", "订单号", "bad_header"),
        ("2026年11月20日", "2026年11月19日", "wrong_date"),
        ("FS1-R1\t", "\t", "bad_row"),  # a refund row without its request number
    ],
)
def test_broken_detail_files_raise_bill_format_errors(old: str, new: str, reason: str) -> None:
    with pytest.raises(BillFormatError) as caught:
        parse_bill_zip(replace_in_detail(old, new), DAY)
    assert caught.value.reason == reason


def test_not_a_zip_and_no_detail_file_are_refused() -> None:
    with pytest.raises(BillFormatError) as caught:
        parse_bill_zip(b"PK\x03\x04 truncated", DAY)
    assert caught.value.reason == "bad_zip"
    data = gbk_zip([("readme.txt", "说明".encode("gbk"))], datetime(2026, 11, 21))
    with pytest.raises(BillFormatError) as caught:
        parse_bill_zip(data, DAY)
    assert caught.value.reason == "no_detail_file"


def test_content_that_is_not_gbk_is_refused() -> None:
    data = gbk_zip(
        [("x_业务明细.csv", b"#\x81\x20 " + "业务明细列表".encode("gbk"))], datetime(2026, 11, 21)
    )
    with pytest.raises(BillFormatError) as caught:
        parse_bill_zip(data, DAY)
    assert caught.value.reason == "bad_encoding"


def test_case31_gbk_archive_tab_padded_cells_negative_refunds_and_a_day_without_a_bill() -> None:
    """Callback case 31 in one place: every trap of the real archive, and the empty day."""
    data = FIXTURE.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        assert all(not info.flag_bits & 0x800 for info in infos)  # GBK names, no UTF-8 flag
        detail = archive.read(infos[0])
    assert "业务明细列表".encode("gbk") in detail  # GBK content
    assert b"\t," in detail  # tab-padded cells
    bill = parse_bill_zip(data, DAY)
    cells = [r.provider_ref + r.out_trade_no + (r.out_refund_no or "") for r in bill.rows]
    assert not any("\t" in cell or " " in cell for cell in cells)
    refunds = [r for r in bill.rows if r.kind is BillKind.REFUND]
    assert [(r.amount_fen, r.order_amount_fen) for r in refunds] == [(-4320, -4320)]
    assert all(r.amount_fen > 0 for r in bill.rows if r.kind is BillKind.PAYMENT)
    empty_day = no_bill(date(2026, 11, 21))
    assert (empty_day.rows, empty_day.summary) == ((), None)
