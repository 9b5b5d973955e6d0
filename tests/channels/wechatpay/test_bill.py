"""The trade bill parser against the independently built fixture (copied byte for byte from
/work/shared/fixtures/bills), and callback-cases.md case 30: SHA1 mismatch, truncated gzip,
BOM, the legacy 24-column layout."""

from __future__ import annotations

import gzip
import hashlib
from datetime import date, datetime
from pathlib import Path

import pytest

from channels.model import BillKind, Provider
from channels.wechatpay import BillError, check_sha1, load_tradebill, parse_tradebill, unpack
from channels.wechatpay.times import CST

FIXTURES = Path(__file__).parent / "fixtures"
NAME = "wechatpay_tradebill_ALL_2026-11-20"
DAY = date(2026, 11, 20)
CSV = (FIXTURES / f"{NAME}.csv").read_bytes()
GZ = (FIXTURES / f"{NAME}.csv.gz").read_bytes()
SHA1 = (FIXTURES / f"{NAME}.sha1").read_text().strip()


def test_fixture_figures() -> None:
    bill = load_tradebill(GZ, DAY, sha1=SHA1)
    assert (bill.provider, bill.bill_date) == (Provider.WECHATPAY, DAY)
    assert len(bill.rows) == 4
    payments = [r for r in bill.rows if r.kind is BillKind.PAYMENT]
    refunds = [r for r in bill.rows if r.kind is BillKind.REFUND]
    assert len(payments) == 3 and all(r.status == "SUCCESS" for r in payments)
    assert len(refunds) == 1
    refund = refunds[0]
    assert (refund.out_refund_no, refund.amount_fen, refund.out_trade_no) == (
        "FS20261120000002-R1",
        -3750,
        "FS20261120000002",
    )
    assert refund.fee_mfen == -22500  # the refund row returns part of the fee
    assert refund.booked_at == datetime(2026, 11, 20, 12, 31, 2, tzinfo=CST)  # acceptance time
    assert sum(r.amount_fen for r in payments) == 58888
    assert sum(r.fee_mfen for r in bill.rows) == 330500  # 3.305 yuan = 330500 milli-fen
    coupon = next(r for r in payments if r.out_trade_no == "FS20261120000002")
    assert (coupon.order_amount_fen, coupon.amount_fen) == (21000, 20000)
    assert sum(r.order_amount_fen or 0 for r in payments) == 59888
    late = next(r for r in payments if r.out_trade_no == "FS20261120000003")
    assert late.booked_at == datetime(2026, 11, 20, 23, 59, 59, tzinfo=CST)
    assert late.booked_at.date() == DAY
    assert all(r.rate_ppm == 6000 for r in bill.rows)
    assert all(r.merchant_id == "1900000109" for r in bill.rows)
    first = bill.rows[0]
    assert (first.provider_ref, first.amount_fen, first.fee_mfen) == (
        "4200002026112000000001",
        30000,
        180000,
    )
    summary = bill.summary
    assert summary is not None
    assert (
        summary.count,
        summary.settled_fen,
        summary.refund_fen,
        summary.fee_mfen,
        summary.order_total_fen,
    ) == (
        4,
        58888,
        3750,
        330500,
        59888,
    )


def test_plain_and_gzipped_give_the_same_bill() -> None:
    assert load_tradebill(CSV, DAY, sha1=SHA1) == load_tradebill(GZ, DAY, sha1=SHA1)
    assert unpack(GZ) == CSV


# -- case 30 ---------------------------------------------------------------------------------


def test_sha1_mismatch() -> None:
    with pytest.raises(BillError) as info:
        load_tradebill(GZ, DAY, sha1="0" * 40)
    assert info.value.reason == "hash_mismatch"
    tampered = CSV.replace(b"`300.00", b"`300.01", 1)
    with pytest.raises(BillError) as info:
        load_tradebill(gzip.compress(tampered), DAY, sha1=SHA1)
    assert info.value.reason == "hash_mismatch"
    check_sha1(CSV, SHA1.upper())  # the hex case of the ticket does not matter


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_gzip(keep: float) -> None:
    with pytest.raises(BillError) as info:
        load_tradebill(GZ[: int(len(GZ) * keep)], DAY, sha1=SHA1)
    assert info.value.reason == "truncated_gzip"


def test_corrupted_gzip() -> None:
    broken = bytearray(GZ)
    broken[-8] ^= 0xFF  # the CRC32 of the trailer
    with pytest.raises(BillError) as info:
        unpack(bytes(broken))
    assert info.value.reason == "bad_gzip"


def test_gzip_bomb_is_refused() -> None:
    with pytest.raises(BillError) as info:
        unpack(gzip.compress(b"0" * 100_000), max_bytes=10_000)
    assert info.value.reason == "oversized"


def test_bom_is_optional() -> None:
    assert CSV.startswith(b"\xef\xbb\xbf")
    without = CSV[3:]
    assert parse_tradebill(without, DAY) == parse_tradebill(CSV, DAY)
    load_tradebill(without, DAY, sha1=hashlib.sha1(without).hexdigest())


def test_lf_line_ends_are_read_too() -> None:
    assert parse_tradebill(CSV.replace(b"\r\n", b"\n"), DAY) == parse_tradebill(CSV, DAY)


def _legacy(content: bytes) -> bytes:
    """The 24-column layout: no 订单金额, 申请退款金额, 费率备注; a 5-column summary."""
    lines = content.split(b"\r\n")
    out = []
    for line in lines:
        cells = line.split(b",")
        if len(cells) == 27:
            cells = cells[:24]
        elif len(cells) == 7:
            cells = cells[:5]
        out.append(b",".join(cells))
        assert line == b"" or len(cells) in (5, 24)
    return b"\r\n".join(out)


def test_legacy_24_column_layout() -> None:
    legacy = _legacy(CSV)
    assert legacy.split(b"\r\n")[0].count(b",") == 23
    bill = load_tradebill(gzip.compress(legacy), DAY, sha1=hashlib.sha1(legacy).hexdigest())
    current = parse_tradebill(CSV, DAY)
    assert len(bill.rows) == 4
    for old, new in zip(bill.rows, current.rows, strict=True):
        assert old.order_amount_fen is None
        assert (old.kind, old.amount_fen, old.fee_mfen, old.out_refund_no, old.booked_at) == (
            new.kind,
            new.amount_fen,
            new.fee_mfen,
            new.out_refund_no,
            new.booked_at,
        )
    assert bill.summary is not None
    assert (bill.summary.count, bill.summary.settled_fen, bill.summary.fee_mfen) == (
        4,
        58888,
        330500,
    )
    assert bill.summary.order_total_fen is None


def test_legacy_headers_with_old_names() -> None:
    legacy = _legacy(CSV)
    renamed = legacy.replace("代金券金额".encode(), "代金券或立减优惠金额".encode(), 1)
    renamed = renamed.replace("特约商户号".encode(), "子商户号".encode(), 1)
    assert parse_tradebill(renamed, DAY).rows == parse_tradebill(legacy, DAY).rows


# -- other broken files ---------------------------------------------------------------------


def _drop_line(content: bytes, index: int) -> bytes:
    lines = content.split(b"\r\n")
    del lines[index]
    return b"\r\n".join(lines)


def test_summary_must_agree_with_the_rows() -> None:
    with pytest.raises(BillError) as info:
        parse_tradebill(_drop_line(CSV, 2), DAY)
    assert info.value.reason == "summary_mismatch"
    with pytest.raises(BillError) as info:
        parse_tradebill(CSV.replace(b"`3.30500", b"`3.30501"), DAY)
    assert info.value.reason == "summary_mismatch"


def test_missing_summary_is_truncation() -> None:
    lines = CSV.split(b"\r\n")
    with pytest.raises(BillError) as info:
        parse_tradebill(b"\r\n".join(lines[:-3]), DAY)
    assert info.value.reason == "truncated"


def test_a_cut_row() -> None:
    lines = CSV.split(b"\r\n")
    lines[2] = lines[2][:60]
    with pytest.raises(BillError) as info:
        parse_tradebill(b"\r\n".join(lines), DAY)
    assert info.value.reason == "bad_row"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b"`1.80000", b"`1.800001", "bad_amount"),
        (b"`300.00,", b"`300.0x,", "bad_amount"),
        (b"`2026-11-20 07:41:09", b"`2026/11/20 07:41:09", "bad_row"),
        ("交易状态".encode(), "状态".encode(), "bad_layout"),
        (b"\xef\xbb\xbf", b"\xff\xfe", "bad_encoding"),
    ],
)
def test_malformed_content(old: bytes, new: bytes, reason: str) -> None:
    with pytest.raises(BillError) as info:
        parse_tradebill(CSV.replace(old, new, 1), DAY)
    assert info.value.reason == reason


def test_empty_file_and_a_day_without_trades() -> None:
    with pytest.raises(BillError):
        parse_tradebill(b"", DAY)
    lines = CSV.split(b"\r\n")
    empty = b"\r\n".join([lines[0], lines[-3], b"`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00", b""])
    bill = parse_tradebill(empty, DAY)
    assert bill.rows == ()
    assert bill.summary is not None and bill.summary.count == 0
