"""The restart-rules table, row by row, without I/O."""

from __future__ import annotations

import pytest

from devices.gfd1 import FPState
from devices.recovery import RULES, Action, JournalView, OpenSale, PumpView, decide, moved_since

TOKEN = 0xC0FFEE
SALE = OpenSale("sale-1", TOKEN, frozenset({2}), {2: 10_000})
KNOWN = {1: 5_000, 2: 10_000}


def journal(open_sale: OpenSale | None = SALE, boot: int | None = 4) -> JournalView:
    return JournalView(open_sale, KNOWN, boot)


def pump(
    state: FPState,
    totals: dict[int, int] | None = None,
    *,
    head: int | None = None,
    auth: int = 0,
    boot: int = 4,
) -> PumpView:
    return PumpView(state, totals or dict(KNOWN), boot, head, auth)


@pytest.mark.parametrize(
    ("j", "p", "action", "moved"),
    [
        # open sale, pump COMPLETED with our token: finish from the sale block
        (
            journal(),
            pump(FPState.COMPLETED, {1: 5_000, 2: 30_000}, head=TOKEN),
            Action.FINISH_FROM_SALE_BLOCK,
            {2: 20_000},
        ),
        # open sale, pump still authorized or fuelling for us: adopt, never authorize again
        (journal(), pump(FPState.AUTHORIZED, auth=TOKEN), Action.ADOPT, {}),
        (
            journal(),
            pump(FPState.FUELLING, {1: 5_000, 2: 11_000}, auth=TOKEN),
            Action.ADOPT,
            {2: 1_000},
        ),
        (journal(), pump(FPState.SUSPENDED_FUELLING, auth=TOKEN), Action.ADOPT, {}),
        # open sale, pump idle, totals == start totals: void (zero sale, release the hold)
        (journal(), pump(FPState.IDLE), Action.VOID, {}),
        (journal(), pump(FPState.CALLING), Action.VOID, {}),
        # open sale, pump idle, totals moved: finish from the totals (the sale block was lost)
        (
            journal(),
            pump(FPState.IDLE, {1: 5_000, 2: 14_500}),
            Action.FINISH_FROM_TOTALS,
            {2: 4_500},
        ),
        # authorized for someone else: not ours to adopt; our sale is told from totals
        (
            journal(),
            pump(FPState.FUELLING, {1: 5_000, 2: 12_000}, auth=7),
            Action.FINISH_FROM_TOTALS,
            {2: 2_000},
        ),
        # a completed sale that is not ours heads the buffer: take it out first
        (
            journal(),
            pump(FPState.COMPLETED, {1: 9_000, 2: 10_000}, head=7),
            Action.ORPHAN,
            {1: 4_000},
        ),
        # no open sale, pump COMPLETED or totals moved: orphan sale, alert
        (
            journal(None),
            pump(FPState.COMPLETED, {1: 6_000, 2: 10_000}, head=7),
            Action.ORPHAN,
            {1: 1_000},
        ),
        (journal(None), pump(FPState.IDLE, {1: 5_000, 2: 10_700}), Action.ORPHAN, {2: 700}),
        # nothing open, nothing moved
        (journal(None), pump(FPState.IDLE), Action.NOTHING, {}),
        (journal(None), pump(FPState.CLOSED), Action.NOTHING, {}),
    ],
)
def test_each_row_of_the_restart_table(
    j: JournalView, p: PumpView, action: Action, moved: dict[int, int]
) -> None:
    recovery = decide(j, p)
    assert recovery.action is action
    assert dict(recovery.moved) == moved
    assert recovery.boot_changed is False
    assert recovery.rule in [rule for rule, _, _ in RULES]


def test_every_rule_is_reachable() -> None:
    reached = {
        decide(journal(), pump(FPState.COMPLETED, head=TOKEN)).rule,
        decide(journal(), pump(FPState.AUTHORIZED, auth=TOKEN)).rule,
        decide(journal(), pump(FPState.COMPLETED, head=1)).rule,
        decide(journal(), pump(FPState.IDLE, {1: 5_000, 2: 10_001})).rule,
        decide(journal(), pump(FPState.IDLE)).rule,
        decide(journal(None), pump(FPState.IDLE, {1: 5_001, 2: 10_000})).rule,
        decide(journal(None), pump(FPState.IDLE)).rule,
    }
    assert reached == {rule for rule, _, _ in RULES}


def test_a_changed_boot_count_is_reported_and_the_totals_decide() -> None:
    lost = decide(journal(), pump(FPState.IDLE, {1: 5_000, 2: 13_000}, boot=5))
    assert (lost.action, lost.boot_changed, dict(lost.moved)) == (
        Action.FINISH_FROM_TOTALS,
        True,
        {2: 3_000},
    )
    assert decide(journal(None, boot=None), pump(FPState.IDLE, boot=9)).boot_changed is False


def test_totals_going_down_are_never_a_sale() -> None:
    assert moved_since({1: 100}, {1: 90}) == {1: -10}
    assert decide(journal(None), pump(FPState.IDLE, {1: 4_000, 2: 10_000})).action is Action.NOTHING
    assert decide(journal(), pump(FPState.IDLE, {1: 5_000, 2: 9_000})).action is Action.VOID


def test_the_sale_is_measured_from_its_own_start_totals() -> None:
    # Start totals journaled before AUTHORIZE win over the last known totals.
    sale = OpenSale("sale-2", TOKEN, frozenset({1, 2}), {1: 5_500, 2: 10_000})
    recovery = decide(journal(sale), pump(FPState.IDLE, {1: 6_000, 2: 10_000}))
    assert recovery.action is Action.FINISH_FROM_TOTALS
    assert dict(recovery.moved) == {1: 500}
