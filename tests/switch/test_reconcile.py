"""Reconciliation (callback-cases.md case 33): every kind of difference, the midnight rule, and
the fixture bills through the providers' own bill parsers."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.alipay.bill import no_bill, parse_bill_zip
from channels.fees import FeeContract
from channels.model import Bill, BillKind, BillRow, Provider
from channels.wechatpay.bill import load_tradebill
from switch.payments.reconcile import (
    BEIJING,
    DifferenceKind,
    Reconciliation,
    SettledEntry,
    reconcile,
)

FIXTURES = Path("/work/shared/fixtures/bills")
DAY = date(2026, 11, 20)
NEXT = date(2026, 11, 21)
WECHAT = FeeContract(rate_ppm=6000, refund_quantum_mfen=1)
ALIPAY = FeeContract(rate_ppm=6000)


def at(day: date, hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=BEIJING)


def payment_row(no: str, fen: int, when: datetime, *, status: str = "SUCCESS") -> BillRow:
    return BillRow(
        BillKind.PAYMENT, when, "1900000109", no, f"42{no}", fen, WECHAT.fee_mfen(fen), status
    )


def refund_row(no: str, refund_no: str, fen: int, paid: int, when: datetime) -> BillRow:
    fee = WECHAT.refund_fee_mfen(fen, paid, WECHAT.fee_mfen(paid))
    return BillRow(
        BillKind.REFUND, when, "1900000109", no, f"42{no}", -fen, fee, "SUCCESS", refund_no
    )


def paid(no: str, fen: int, when: datetime, channel: str = "wx") -> SettledEntry:
    return SettledEntry(channel, BillKind.PAYMENT, no, fen, when, WECHAT.fee_mfen(fen))


def refunded(no: str, refund_no: str, fen: int, of: int, when: datetime) -> SettledEntry:
    fee = WECHAT.refund_fee_mfen(fen, of, WECHAT.fee_mfen(of))
    return SettledEntry("wx", BillKind.REFUND, no, fen, when, fee, refund_no)


def bill(day: date, *rows: BillRow) -> Bill:
    return Bill(Provider.WECHATPAY, day, rows, None)


def kinds(result: Reconciliation) -> list[tuple[DifferenceKind, str]]:
    return [(d.kind, d.out_refund_no or d.out_trade_no) for d in result.differences]


# -- the kinds of difference ------------------------------------------------------------------


def test_matching_books_are_clean() -> None:
    ours = [paid("A1", 20000, at(DAY, 12, 5)), refunded("A1", "A1-R1", 3750, 20000, at(DAY, 13, 0))]
    rows = (
        payment_row("A1", 20000, at(DAY, 12, 5)),
        refund_row("A1", "A1-R1", 3750, 20000, at(DAY, 13, 0)),
    )
    result = reconcile("wx", DAY, ours, [bill(DAY, *rows)])
    assert result.clean
    assert result.matched == 2
    assert result.cross_day == ()


def test_missing_ours_and_missing_provider() -> None:
    ours = [paid("ONLY-OURS", 1000, at(DAY, 9, 0))]
    result = reconcile("wx", DAY, ours, [bill(DAY, payment_row("ONLY-BILL", 500, at(DAY, 9, 1)))])
    assert kinds(result) == [
        (DifferenceKind.MISSING_PROVIDER, "ONLY-OURS"),
        (DifferenceKind.MISSING_OURS, "ONLY-BILL"),
    ]
    missing_ours = result.of_kind(DifferenceKind.MISSING_OURS)[0]
    assert missing_ours.provider is not None and missing_ours.ours is None
    assert result.matched == 0


def test_amount_mismatch() -> None:
    ours = [paid("A", 10000, at(DAY, 9, 0)), refunded("A", "A-R", 2000, 10000, at(DAY, 10, 0))]
    rows = (
        replace(payment_row("A", 10000, at(DAY, 9, 0)), amount_fen=9900),
        refund_row("A", "A-R", 2000, 10000, at(DAY, 10, 0)),
    )
    result = reconcile("wx", DAY, ours, [bill(DAY, *rows)])
    assert kinds(result) == [(DifferenceKind.AMOUNT_MISMATCH, "A")]
    assert result.differences[0].detail == "ours 10000 fen, bill 9900 fen"


def test_status_mismatch() -> None:
    """We booked the refund as done; the provider's row says it went ABNORMAL."""
    ours = [paid("A", 10000, at(DAY, 9, 0)), refunded("A", "A-R", 2000, 10000, at(DAY, 10, 0))]
    rows = (
        payment_row("A", 10000, at(DAY, 9, 0)),
        replace(refund_row("A", "A-R", 2000, 10000, at(DAY, 10, 0)), status="ABNORMAL"),
    )
    result = reconcile("wx", DAY, ours, [bill(DAY, *rows)])
    assert kinds(result) == [(DifferenceKind.STATUS_MISMATCH, "A-R")]


def test_an_unsettled_row_we_do_not_have_is_no_difference() -> None:
    row = payment_row("REVOKED", 10000, at(DAY, 9, 0), status="REVOKED")
    assert reconcile("wx", DAY, [], [bill(DAY, row)]).clean


def test_duplicate_provider_rows() -> None:
    row = payment_row("A", 10000, at(DAY, 9, 0))
    ours = [paid("A", 10000, at(DAY, 9, 0))]
    result = reconcile("wx", DAY, ours, [bill(DAY, row, row)])
    assert kinds(result) == [(DifferenceKind.DUPLICATE_PROVIDER_ROW, "A")]
    # Without our entry: one row is missing ours, the other a duplicate.
    alone = reconcile("wx", DAY, [], [bill(DAY, row, row)])
    assert kinds(alone) == [
        (DifferenceKind.MISSING_OURS, "A"),
        (DifferenceKind.DUPLICATE_PROVIDER_ROW, "A"),
    ]


def test_fee_mismatch() -> None:
    ours = [paid("A", 8888, at(DAY, 9, 0))]
    row = replace(payment_row("A", 8888, at(DAY, 9, 0)), fee_mfen=54000)  # 0.54, contract 0.53
    result = reconcile("wx", DAY, ours, [bill(DAY, row)])
    assert kinds(result) == [(DifferenceKind.FEE_MISMATCH, "A")]
    assert result.differences[0].detail == "contract 53000 mfen, bill 54000 mfen"
    assert reconcile("wx", DAY, ours, [bill(DAY, row)], fee_tolerance_mfen=1000).clean


def test_duplicate_ours() -> None:
    entry = paid("A", 100, at(DAY, 9, 0))
    result = reconcile("wx", DAY, [entry, entry], [bill(DAY, payment_row("A", 100, at(DAY, 9, 0)))])
    assert kinds(result) == [(DifferenceKind.DUPLICATE_OURS, "A")]


def test_only_the_channels_own_entries_count() -> None:
    ours = [paid("A", 100, at(DAY, 9, 0)), paid("B", 100, at(DAY, 9, 0), channel="wx-other")]
    result = reconcile("wx", DAY, ours, [bill(DAY, payment_row("A", 100, at(DAY, 9, 0)))])
    assert result.clean


# -- midnight -------------------------------------------------------------------------------------


def test_a_payment_at_midnight_matches_the_next_days_bill() -> None:
    ours = [paid("LATE", 8888, at(DAY, 23, 59, 59, 900_000))]
    bills = [bill(DAY), bill(NEXT, payment_row("LATE", 8888, at(NEXT, 0, 0, 0, 300_000)))]
    today = reconcile("wx", DAY, ours, bills)
    assert today.clean
    assert today.matched == 1
    assert today.cross_day == ("payment LATE",)
    # The next day's run does not call the row "missing ours".
    assert reconcile("wx", NEXT, ours, bills).clean


def test_our_clock_ahead_of_the_providers_across_midnight() -> None:
    ours = [paid("EARLY", 100, at(NEXT, 0, 0, 0, 400_000))]
    bills = [bill(DAY, payment_row("EARLY", 100, at(DAY, 23, 59, 59))), bill(NEXT)]
    assert reconcile("wx", DAY, ours, bills).clean
    tomorrow = reconcile("wx", NEXT, ours, bills)
    assert tomorrow.clean
    assert tomorrow.cross_day == ("payment EARLY",)


def test_across_midnight_the_pair_is_still_compared() -> None:
    ours = [paid("LATE", 8888, at(DAY, 23, 59, 59, 900_000))]
    row = replace(payment_row("LATE", 8888, at(NEXT, 0, 0, 1)), amount_fen=8800)
    result = reconcile("wx", DAY, ours, [bill(DAY), bill(NEXT, row)])
    assert kinds(result) == [(DifferenceKind.AMOUNT_MISMATCH, "LATE")]
    assert reconcile("wx", NEXT, ours, [bill(DAY), bill(NEXT, row)]).clean  # reported once


def test_beyond_the_tolerance_it_is_missing_on_both_days() -> None:
    ours = [paid("FAR", 100, at(DAY, 23, 50))]
    bills = [bill(DAY), bill(NEXT, payment_row("FAR", 100, at(NEXT, 0, 10)))]
    result = reconcile("wx", DAY, ours, bills)
    assert kinds(result) == [(DifferenceKind.MISSING_PROVIDER, "FAR")]
    assert "booked by the provider on 2026-11-21" in result.differences[0].detail
    assert kinds(reconcile("wx", NEXT, ours, bills)) == [(DifferenceKind.MISSING_OURS, "FAR")]
    assert reconcile("wx", DAY, ours, bills, tolerance=timedelta(minutes=30)).clean


def test_without_the_neighbouring_bill_it_is_missing() -> None:
    ours = [paid("LATE", 100, at(DAY, 23, 59, 59, 900_000))]
    result = reconcile("wx", DAY, ours, [bill(DAY)])
    assert kinds(result) == [(DifferenceKind.MISSING_PROVIDER, "LATE")]


def test_a_row_repeated_in_the_next_days_bill_is_a_duplicate() -> None:
    ours = [paid("TWICE", 100, at(DAY, 23, 59, 59))]
    bills = [
        bill(DAY, payment_row("TWICE", 100, at(DAY, 23, 59, 59))),
        bill(NEXT, payment_row("TWICE", 100, at(NEXT, 0, 0, 1))),
    ]
    assert reconcile("wx", DAY, ours, bills).clean
    assert kinds(reconcile("wx", NEXT, ours, bills)) == [
        (DifferenceKind.DUPLICATE_PROVIDER_ROW, "TWICE")
    ]


def test_naive_times_are_beijing_time() -> None:
    """UnionPay's ZM rows carry naive Beijing times; our entries are aware (UTC here)."""
    utc_entry = paid("U", 100, datetime(2026, 11, 20, 15, 59, 59, 900_000).astimezone(BEIJING))
    naive_row = replace(
        payment_row("U", 100, at(DAY, 0, 0)), booked_at=datetime(2026, 11, 21, 0, 0)
    )
    bills = [bill(DAY), bill(NEXT, naive_row)]
    assert reconcile("wx", DAY, [utc_entry], bills).cross_day == ("payment U",)


# -- bad input -------------------------------------------------------------------------------------


def test_the_days_bill_is_required_once() -> None:
    with pytest.raises(ValueError, match="no bill for 2026-11-20"):
        reconcile("wx", DAY, [], [bill(NEXT)])
    with pytest.raises(ValueError, match="two bills"):
        reconcile("wx", DAY, [], [bill(DAY), bill(DAY)])


def test_entries_are_checked() -> None:
    with pytest.raises(ValueError):
        SettledEntry("wx", BillKind.REFUND, "A", 100, at(DAY, 1, 0), 0)  # no out_refund_no
    with pytest.raises(ValueError):
        SettledEntry("wx", BillKind.PAYMENT, "A", -100, at(DAY, 1, 0), 0)
    with pytest.raises(TypeError):
        SettledEntry("wx", BillKind.PAYMENT, "A", 1.5, at(DAY, 1, 0), 0)  # type: ignore[arg-type]


# -- a property: books made from the bill are clean; each change shows as one difference ---------

rows_strategy = st.lists(
    st.tuples(st.integers(1, 10**7), st.integers(0, 86_399)), min_size=1, max_size=20
)


@settings(max_examples=100, deadline=None)
@given(rows_strategy, st.data())
def test_books_from_the_bill_reconcile_and_each_gap_is_reported(
    specs: list[tuple[int, int]], data: st.DataObject
) -> None:
    rows = [
        payment_row(f"P{i}", fen, at(DAY, 0, 0) + timedelta(seconds=second))
        for i, (fen, second) in enumerate(specs)
    ]
    ours = [paid(r.out_trade_no, r.amount_fen, r.booked_at) for r in rows]
    assert reconcile("wx", DAY, ours, [bill(DAY, *rows)]).clean
    dropped = data.draw(st.integers(0, len(ours) - 1))
    result = reconcile("wx", DAY, ours[:dropped] + ours[dropped + 1 :], [bill(DAY, *rows)])
    assert kinds(result) == [(DifferenceKind.MISSING_OURS, f"P{dropped}")]


# -- the fixture bills, through the providers' parsers --------------------------------------------


def wechat_fixture() -> Bill:
    raw = (FIXTURES / "wechatpay_tradebill_ALL_2026-11-20.csv.gz").read_bytes()
    sha1 = (FIXTURES / "wechatpay_tradebill_ALL_2026-11-20.sha1").read_text().strip()
    return load_tradebill(raw, DAY, sha1=sha1)


def wechat_books(contract: FeeContract = WECHAT) -> list[SettledEntry]:
    def pay(no: str, fen: int, when: datetime) -> SettledEntry:
        return SettledEntry("wx", BillKind.PAYMENT, no, fen, when, contract.fee_mfen(fen))

    refund_fee = contract.refund_fee_mfen(3750, 20000, contract.fee_mfen(20000))
    return [
        pay("FS20261120000001", 30000, at(DAY, 7, 41, 9, 120_000)),
        pay("FS20261120000002", 20000, at(DAY, 12, 5, 33, 480_000)),  # 210.00 less a coupon
        SettledEntry(
            "wx",
            BillKind.REFUND,
            "FS20261120000002",
            3750,
            at(DAY, 12, 31, 2, 10_000),
            refund_fee,
            "FS20261120000002-R1",
        ),
        # Paid at 23:59:59 by WeChat's clock; our callback booked it just after midnight.
        pay("FS20261120000003", 8888, at(NEXT, 0, 0, 0, 400_000)),
    ]


def test_wechat_fixture_bill_reconciles_across_midnight() -> None:
    bills = [wechat_fixture(), Bill(Provider.WECHATPAY, NEXT, (), None)]
    today = reconcile("wx", DAY, wechat_books(), bills)
    assert today.clean
    assert today.matched == 3
    tomorrow = reconcile("wx", NEXT, wechat_books(), bills)
    assert tomorrow.clean
    assert tomorrow.cross_day == ("payment FS20261120000003",)


def test_wechat_fixture_differences() -> None:
    books = wechat_books()
    books[0] = replace(books[0], amount_fen=29900)
    del books[2]  # the refund never made it into our books
    bills = [wechat_fixture(), Bill(Provider.WECHATPAY, NEXT, (), None)]
    result = reconcile("wx", DAY, books, bills)
    assert kinds(result) == [
        (DifferenceKind.AMOUNT_MISMATCH, "FS20261120000001"),
        (DifferenceKind.MISSING_OURS, "FS20261120000002-R1"),
    ]


def test_wechat_fixture_against_a_different_contract_shows_every_fee() -> None:
    books = wechat_books(FeeContract(rate_ppm=5500, refund_quantum_mfen=1))
    bills = [wechat_fixture(), Bill(Provider.WECHATPAY, NEXT, (), None)]
    result = reconcile("wx", DAY, books, bills)
    assert [d.kind for d in result.differences] == [DifferenceKind.FEE_MISMATCH] * 3
    assert [d.kind for d in reconcile("wx", NEXT, books, bills).differences] == [
        DifferenceKind.FEE_MISMATCH
    ]


def alipay_books() -> list[SettledEntry]:
    def pay(no: str, fen: int, when: datetime) -> SettledEntry:
        return SettledEntry("ali", BillKind.PAYMENT, no, fen, when, ALIPAY.fee_mfen(fen))

    refund_fee = ALIPAY.refund_fee_mfen(4320, 30000, ALIPAY.fee_mfen(30000))
    return [
        pay("FS20261120000101", 30000, at(DAY, 8, 2, 15)),
        pay("FS20261120000102", 25640, at(DAY, 9, 21, 3)),
        SettledEntry(
            "ali",
            BillKind.REFUND,
            "FS20261120000101",
            4320,
            at(DAY, 8, 40),
            refund_fee,
            "FS20261120000101-R1",
        ),
    ]


def alipay_fixture() -> Bill:
    raw = (FIXTURES / "alipay_20881234567890120156_20261120.csv.zip").read_bytes()
    return parse_bill_zip(raw, DAY)


def test_alipay_fixture_bill_reconciles() -> None:
    result = reconcile("ali", DAY, alipay_books(), [alipay_fixture()])
    assert result.clean
    assert result.matched == 3


def test_alipay_day_without_a_bill() -> None:
    """Alipay has no file for a day without business: what we booked that day is missing."""
    books = [replace(e, booked_at=e.booked_at + timedelta(days=1)) for e in alipay_books()]
    result = reconcile("ali", NEXT, books, [alipay_fixture(), no_bill(NEXT)])
    assert [d.kind for d in result.differences] == [DifferenceKind.MISSING_PROVIDER] * 3
