"""Reconciliation: what we booked as settled against what the provider's bill says it settled.

Pure: our entries and parsed :class:`~channels.model.Bill` objects in, differences out. The
comparison runs per channel and per business day, and is keyed by the idempotency keys both
sides know (out_trade_no for a payment, out_refund_no for a refund).

Midnight. A payment we book at 23:59:59.9 may be booked by the provider at 00:00:00.3 the next
day, and so appear in the next day's bill. Reported naively, that is a "missing" on each of two
days for one payment that is perfectly fine. So a day is reconciled against a *window* of bills
(the day's own and, when given, its neighbours'): an entry not in its day's bill matches a row
in a neighbouring bill if the two booking times lie within ``tolerance`` of each other, and a
row of the day's bill whose entry we booked on a neighbouring day is not "missing ours". Each
pair is compared (amount, status, fee) once, in the run of the day we booked it.

Times: bills are in the providers' local time (Beijing); naive datetimes are taken to be in it,
aware ones are converted to it.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Final

from channels.model import Bill, BillKind, BillRow, Provider

__all__ = [
    "BEIJING",
    "SETTLED_STATUSES",
    "Difference",
    "DifferenceKind",
    "Reconciliation",
    "SettledEntry",
    "reconcile",
]

BEIJING: Final = timezone(timedelta(hours=8), "CST")

# The status words of bill rows that mean the money moved, per provider (as the parsers write
# BillRow.status): WeChat's 交易状态 SUCCESS or 退款状态 SUCCESS (REFUND when the refund row
# leaves it empty); Alipay's bill lists only settled business, typed 交易 / 退款; UnionPay's
# ZM file only successful transactions (respCode 00, or A6 partially successful).
SETTLED_STATUSES: Final[Mapping[Provider, frozenset[str]]] = {
    Provider.WECHATPAY: frozenset({"SUCCESS", "REFUND"}),
    Provider.ALIPAY: frozenset({"交易", "退款"}),
    Provider.UNIONPAY: frozenset({"00", "A6"}),
}


class DifferenceKind(enum.Enum):
    MISSING_OURS = "missing_ours"  # the provider settled it; we have no such entry
    MISSING_PROVIDER = "missing_provider"  # we booked it; no bill in the window has it
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"  # the provider's row says it did not settle
    DUPLICATE_PROVIDER_ROW = "duplicate_provider_row"  # one key on several rows
    FEE_MISMATCH = "fee_mismatch"  # the provider's fee differs from the contract's
    DUPLICATE_OURS = "duplicate_ours"  # one key booked twice on our side


@dataclass(frozen=True, slots=True)
class SettledEntry:
    """A payment or refund we booked as settled.

    ``amount_fen`` is positive for both kinds: what the provider should settle for a payment
    (after provider-funded coupons), what went back for a refund. ``expected_fee_mfen`` comes
    from the channel's :class:`~channels.fees.FeeContract`: positive when charged (a payment),
    negative when given back (a refund), as bills show it.
    """

    channel: str
    kind: BillKind
    out_trade_no: str
    amount_fen: int
    booked_at: datetime
    expected_fee_mfen: int
    out_refund_no: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.amount_fen, bool) or not isinstance(self.amount_fen, int):
            raise TypeError(f"amounts are integer fen, got {self.amount_fen!r}")
        if self.amount_fen < 0:
            raise ValueError("amount_fen is positive for payments and refunds alike")
        if (self.kind is BillKind.REFUND) != (self.out_refund_no is not None):
            raise ValueError("a refund, and only a refund, carries out_refund_no")

    @property
    def key(self) -> tuple[BillKind, str, str | None]:
        return (self.kind, self.out_trade_no, self.out_refund_no)


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    entry_kind: BillKind
    out_trade_no: str
    out_refund_no: str | None
    ours: SettledEntry | None
    provider: BillRow | None
    detail: str


@dataclass(frozen=True, slots=True)
class Reconciliation:
    channel: str
    day: date
    matched: int  # our entries of the day found on the provider's side (differences or not)
    cross_day: tuple[str, ...]  # keys matched with a neighbouring day's bill, across midnight
    differences: tuple[Difference, ...]

    @property
    def clean(self) -> bool:
        return not self.differences

    def of_kind(self, kind: DifferenceKind) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.kind is kind)


_Key = tuple[BillKind, str, str | None]


def _row_key(row: BillRow) -> _Key:
    return (row.kind, row.out_trade_no, row.out_refund_no if row.kind is BillKind.REFUND else None)


def _local(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.astimezone(BEIJING).replace(tzinfo=None)


def _label(key: _Key) -> str:
    kind, out_trade_no, out_refund_no = key
    return f"{kind.value} {out_refund_no or out_trade_no}"


def reconcile(
    channel: str,
    day: date,
    ours: Iterable[SettledEntry],
    bills: Sequence[Bill],
    *,
    tolerance: timedelta = timedelta(minutes=5),
    fee_tolerance_mfen: int = 0,
    settled_statuses: Mapping[Provider, frozenset[str]] = SETTLED_STATUSES,
) -> Reconciliation:
    """Compare ``channel``'s entries booked on ``day`` with the day's bill.

    ``bills`` holds the day's bill and, for the midnight rule, the neighbours' bills when they
    exist. ``ours`` may hold entries of any day and channel: only ``channel``'s are used, the
    neighbouring days' ones to recognise rows the provider booked across midnight.
    """
    by_day: dict[date, Bill] = {}
    for bill in bills:
        if bill.bill_date in by_day:
            raise ValueError(f"two bills for {bill.bill_date}")
        by_day[bill.bill_date] = bill
    if day not in by_day:
        raise ValueError(f"no bill for {day} among {sorted(by_day)}")
    run = _Run(day, tolerance, fee_tolerance_mfen, settled_statuses[by_day[day].provider])
    for bill_day in sorted(by_day):
        for row in by_day[bill_day].rows:
            run.rows[_row_key(row)].append((bill_day, row))
    for entry in ours:
        if entry.channel == channel:
            run.entries[entry.key].append(entry)
    run.our_side()
    run.provider_side()
    return Reconciliation(channel, day, run.matched, tuple(run.cross_day), tuple(run.differences))


class _Run:
    """One day's reconciliation: the indexes, and what it found so far."""

    def __init__(
        self, day: date, tolerance: timedelta, fee_tolerance_mfen: int, settled: frozenset[str]
    ) -> None:
        self.day = day
        self.tolerance = tolerance
        self.fee_tolerance_mfen = fee_tolerance_mfen
        self.settled = settled
        self.rows: dict[_Key, list[tuple[date, BillRow]]] = defaultdict(list)  # bill day, row
        self.entries: dict[_Key, list[SettledEntry]] = defaultdict(list)
        self.matched = 0
        self.cross_day: list[str] = []
        self.differences: list[Difference] = []

    def near(self, entry: SettledEntry, row: BillRow) -> bool:
        return abs(_local(row.booked_at) - _local(entry.booked_at)) <= self.tolerance

    def booked_today(self, entry: SettledEntry) -> bool:
        return _local(entry.booked_at).date() == self.day

    def report(
        self,
        kind: DifferenceKind,
        key: _Key,
        entry: SettledEntry | None,
        row: BillRow | None,
        detail: str,
    ) -> None:
        self.differences.append(Difference(kind, key[0], key[1], key[2], entry, row, detail))

    def our_side(self) -> None:
        """Every entry we booked on the day: found in its bill, or across midnight, or missing."""
        day = self.day
        for key, booked in self.entries.items():
            todays = [e for e in booked if self.booked_today(e)]
            if not todays:
                continue
            entry = todays[0]
            for extra in todays[1:]:
                self.report(DifferenceKind.DUPLICATE_OURS, key, extra, None, "booked twice")
            found = self.rows.get(key, [])
            own = [row for d, row in found if d == day]
            adjacent = [row for d, row in found if d != day and self.near(entry, row)]
            if own:
                row = own[0]
                for extra_row in own[1:]:
                    detail = f"again in the {day} bill"
                    self.report(
                        DifferenceKind.DUPLICATE_PROVIDER_ROW, key, entry, extra_row, detail
                    )
            elif adjacent:
                row = adjacent[0]
                self.cross_day.append(_label(key))
            else:
                elsewhere = ", ".join(sorted({d.isoformat() for d, _ in found}))
                detail = f"not in the {day} bill"
                if elsewhere:
                    detail += f" (booked by the provider on {elsewhere}, beyond {self.tolerance})"
                self.report(DifferenceKind.MISSING_PROVIDER, key, entry, None, detail)
                continue
            self.matched += 1
            self.compare(key, entry, row)

    def compare(self, key: _Key, entry: SettledEntry, row: BillRow) -> None:
        if row.status not in self.settled:
            detail = f"bill status {row.status}"
            self.report(DifferenceKind.STATUS_MISMATCH, key, entry, row, detail)
            return
        expected = entry.amount_fen if entry.kind is BillKind.PAYMENT else -entry.amount_fen
        if row.amount_fen != expected:
            detail = f"ours {expected} fen, bill {row.amount_fen} fen"
            self.report(DifferenceKind.AMOUNT_MISMATCH, key, entry, row, detail)
        if abs(row.fee_mfen - entry.expected_fee_mfen) > self.fee_tolerance_mfen:
            detail = f"contract {entry.expected_fee_mfen} mfen, bill {row.fee_mfen} mfen"
            self.report(DifferenceKind.FEE_MISMATCH, key, entry, row, detail)

    def provider_side(self) -> None:
        """Every row of the day's bill that no entry of the day accounted for."""
        for key, found in self.rows.items():
            own = [row for d, row in found if d == self.day]
            booked = self.entries.get(key, [])
            if not own or any(self.booked_today(e) for e in booked):
                continue  # not in this bill, or compared on our side
            neighbour = next((e for e in booked if self.near(e, own[0])), None)
            if neighbour is None:
                if own[0].status in self.settled:  # an unsettled row moved no money
                    detail = "not booked on our side"
                    self.report(DifferenceKind.MISSING_OURS, key, None, own[0], detail)
                extras = own[1:]
            elif any(d == _local(neighbour.booked_at).date() for d, _ in found):
                extras = own  # the neighbour day's own bill has the row: these repeat it
            else:
                extras = own[1:]  # booked across midnight, compared in the neighbour day's run
            for extra_row in extras:
                detail = "row repeated"
                self.report(DifferenceKind.DUPLICATE_PROVIDER_ROW, key, None, extra_row, detail)
