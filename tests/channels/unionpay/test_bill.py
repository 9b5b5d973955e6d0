"""ZM reconciliation files (case 32 of specs/callback-cases.md): fixed width in GBK bytes,
multi-byte names, C/D signed amounts.

The lines here are written field by field from the layout documented in ``bill.py``'s
docstring (widths typed in again below), not with the simulator's writer, so a parser that
agrees only with its own writer would fail here."""

from __future__ import annotations

import base64
import io
import itertools
import zipfile
import zlib
from datetime import date, datetime

import pytest

from channels.model import BillKind, Provider
from channels.unionpay import (
    ZM_COLUMNS,
    ZM_LINE_BYTES,
    AcpError,
    parse_file_content,
    parse_zm,
    split_line,
)
from tests.channels.unionpay.support import MER_ID

# (width, right-aligned with zeros?) in file order, as in the docstring's table
WIDTHS = [3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 40, 2, 6, 10, 13, 13, 2, 2, 6, 21, 15, 40, 40, 40, 4]


def _line(
    *,
    code: str,
    trace_time: str,
    amount: int,
    query_id: str,
    order_id: str,
    fee: str,
    settle: str,
    txn_type: str,
    orig_query_id: str = "",
    name: str = "中石化北京第一加油站",
    reserved: str = "",
    orig_order_id: str = "",
    settle_date: str = "1120",
) -> bytes:
    values = [
        code, "00010000", "00010000", "123456", trace_time, "6216****0001",
        f"{amount:012d}", "5541", "08", query_id, order_id, "01", "", "", fee, settle,
        txn_type, "00" if txn_type != "01" else "01", "000201", orig_query_id, MER_ID, name,
        reserved, orig_order_id, settle_date,
    ]  # fmt: skip
    parts = []
    for value, width in zip(values, WIDTHS, strict=True):
        raw = value.encode("gbk")
        assert len(raw) <= width
        parts.append(raw + b" " * (width - len(raw)))
    return b" ".join(parts)


PAYMENT = _line(
    code="S30",
    trace_time="1120093015",
    amount=18000,
    query_id="782611200930150000011",
    order_id="FS20261120000001C1",
    fee="D000000000108",
    settle="C000000018000",
    txn_type="03",
    orig_query_id="782611200915000000010",
    reserved="FS20261120000001",
    orig_order_id="FS20261120000001",
)
REFUND = _line(
    code="S33",
    trace_time="1120150000",
    amount=2500,
    query_id="782611201500000000012",
    order_id="FS20261120000001R1",
    fee="C000000000015",
    settle="D000000002500",
    txn_type="04",
    orig_query_id="782611200930150000011",
    name="加油站",
    reserved="FS20261120000001",
    orig_order_id="FS20261120000001C1",
)
CONSUME_LATE = _line(  # 23:30 on the 19th belongs to the clearing day of the 20th
    code="S22",
    trace_time="1119233000",
    amount=9999,
    query_id="782611192330000000013",
    order_id="FS20261119000009",
    fee="D000000000060",
    settle="C000000009999",
    txn_type="01",
    name="ABC",
)


def test_the_layout_table_is_contiguous_with_one_space_between_fields() -> None:
    assert [c.width for c in ZM_COLUMNS] == WIDTHS
    for before, after in itertools.pairwise(ZM_COLUMNS):
        assert after.offset == before.offset + before.width + 1
    assert len(PAYMENT) == ZM_LINE_BYTES == 377


def test_multi_byte_names_are_sliced_as_bytes() -> None:
    fields = split_line(PAYMENT)
    assert fields["mer_abbr"] == "中石化北京第一加油站"  # 10 characters, 20 bytes
    assert fields["reserved"] == "FS20261120000001"  # the field after it is still in place
    assert fields["settle_date"] == "1120"
    # the same line decoded first and sliced by characters lands elsewhere
    text = PAYMENT.decode("gbk")
    assert text[291:331].strip() != "FS20261120000001"


def test_rows_with_signed_amounts() -> None:
    rows = parse_zm(b"\r\n".join([PAYMENT, REFUND, CONSUME_LATE]) + b"\r\n", date(2026, 11, 20))
    payment, refund, late = rows
    assert payment.kind is BillKind.PAYMENT
    assert payment.out_trade_no == "FS20261120000001"  # the hold's key, from reqReserved
    assert payment.provider_ref == "782611200930150000011"
    assert (payment.amount_fen, payment.fee_mfen, payment.order_amount_fen) == (
        18000,
        108000,
        18000,
    )
    assert payment.booked_at == datetime(2026, 11, 20, 9, 30, 15)
    assert payment.merchant_id == MER_ID
    assert refund.kind is BillKind.REFUND
    assert (refund.amount_fen, refund.fee_mfen) == (-2500, -15000)
    assert refund.out_refund_no == "FS20261120000001R1"
    assert refund.out_trade_no == "FS20261120000001"
    assert refund.order_amount_fen is None
    assert late.out_trade_no == "FS20261119000009"
    assert late.booked_at == datetime(2026, 11, 19, 23, 30, 0)


def test_a_new_year_file_books_the_old_year() -> None:
    line = _line(
        code="S22",
        trace_time="1231233000",
        amount=100,
        query_id="1",
        order_id="FS20261231000001",
        fee="D000000000001",
        settle="C000000000100",
        txn_type="01",
        settle_date="0101",
    )
    (row,) = parse_zm(line, date(2027, 1, 1))
    assert row.booked_at == datetime(2026, 12, 31, 23, 30, 0)


def _content(files: dict[str, bytes], *, raw_deflate: bool = False) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    if raw_deflate:
        packer = zlib.compressobj(wbits=-15)
        packed = packer.compress(buffer.getvalue()) + packer.flush()
    else:
        packed = zlib.compress(buffer.getvalue())
    return base64.b64encode(packed).decode()


@pytest.mark.parametrize("raw_deflate", [False, True])
def test_file_content_of_a_zip(raw_deflate: bool) -> None:
    content = _content(
        {
            f"INN26112088ZM_{MER_ID}": PAYMENT + b"\r\n" + REFUND + b"\r\n",
            f"INN26112088ZME_{MER_ID}": b"anything at all",
            "README.txt": "说明".encode("gbk"),
        },
        raw_deflate=raw_deflate,
    )
    bill = parse_file_content(content, date(2026, 11, 20))
    assert bill.provider is Provider.UNIONPAY
    assert bill.bill_date == date(2026, 11, 20)
    assert len(bill.rows) == 2
    assert sum(r.amount_fen for r in bill.rows) == 15500
    assert bill.summary is None


def test_an_empty_day() -> None:
    bill = parse_file_content(_content({f"INN26112088ZM_{MER_ID}": b""}), date(2026, 11, 20))
    assert bill.rows == ()


@pytest.mark.parametrize(
    ("mangle", "fragment"),
    [
        (lambda line: line[:-1], "377 bytes"),
        (lambda line: line.replace(b"C000000018000", b"X000000018000"), "C/D"),
        (lambda line: line.replace(b"C000000018000", b"D000000018000"), "disagrees"),
        (lambda line: line.replace(b"000000018000 5541", b"00000001800X 5541"), "txn_amt"),
        (lambda line: line.replace(b" 1120", b" 1121"), "clearing day"),
        (lambda line: line[:199] + b"02" + line[201:], "no place"),
    ],
)
def test_bad_lines(mangle: object, fragment: str) -> None:
    assert callable(mangle)
    with pytest.raises(AcpError) as info:
        parse_zm(mangle(PAYMENT), date(2026, 11, 20))
    assert info.value.reason == "bad_bill"
    assert fragment in info.value.message
    assert info.value.message.startswith("line 1:")


def test_a_character_cut_in_half_is_an_error() -> None:
    # a name one byte too long for its field, cut by a careless writer: half a character
    name = "中石化北京第一加油站中石化北京第一加油站".encode("gbk")[:39] + b" "
    line = PAYMENT[:250] + name + PAYMENT[290:]
    with pytest.raises(AcpError) as info:
        split_line(line)
    assert "GBK" in info.value.message


@pytest.mark.parametrize(
    "content",
    [
        "not base64!",
        base64.b64encode(b"plain").decode(),
        base64.b64encode(zlib.compress(b"nozip")).decode(),
    ],
)
def test_bad_file_content(content: str) -> None:
    with pytest.raises(AcpError) as info:
        parse_file_content(content, date(2026, 11, 20))
    assert info.value.reason == "bad_bill"


def test_a_zip_without_a_zm_file() -> None:
    with pytest.raises(AcpError):
        parse_file_content(_content({"INN26112088ZME_1": b""}), date(2026, 11, 20))
