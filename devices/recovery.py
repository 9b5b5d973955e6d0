"""Restart rules for a fuelling point: what the journal says x what the pump says -> what to do.

Theory of operation
-------------------
A PumpActor that starts (first boot, crash, switch restart, pump back online) must
finish or void whatever sale it left open, without ever authorizing twice or losing
litres. It knows two things: its journal (the open sale with its token and start
totals, and the totals it last saw) and the pump's present state (status block and
totals). ``decide`` matches them against ``RULES`` - the table in
``../shared/specs/gfd1-modbus.md``, first match wins - and returns one ``Recovery``
with the action and why. Pure: no I/O, no trio; the actor carries the decision out
and journals it. A changed BOOT_COUNT never short-circuits the table: it is reported
(``boot_changed``) so the actor raises an alert, and the totals decide what happened.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from .gfd1.states import FPState


class Action(enum.Enum):
    FINISH_FROM_SALE_BLOCK = "finish from the pump's sale block, then clear"
    VOID = "void: zero sale, release the payment hold"
    FINISH_FROM_TOTALS = "finish from the totals' difference; mark reconstructed"
    ADOPT = "adopt and keep watching; never authorize again"
    ORPHAN = "record an orphan sale from the totals' difference; alert"
    NOTHING = "nothing to recover"


@dataclass(frozen=True, slots=True)
class OpenSale:
    """A sale the journal shows as started (``auth_requested`` or later) but not ended."""

    sale_id: str
    token: int
    nozzles: frozenset[int]  # the nozzles the authorization allowed
    start_volume_totals: Mapping[int, int]  # nozzle -> mL, read before AUTHORIZE
    # fen, read with them: a sale lost with the power is priced from these
    start_amount_totals: Mapping[int, int] = field(default_factory=dict)
    price_set_id: int | None = None  # prices in force when it was authorized
    order_id: str | None = None  # the order it belongs to


@dataclass(frozen=True, slots=True)
class JournalView:
    open_sale: OpenSale | None
    known_volume_totals: Mapping[int, int]  # nozzle -> mL at the last sale's end (or first read)
    boot_count: int | None  # as last journaled; None before the first contact
    # pump sale numbers already journaled (payable or orphan): a sale of ours that ended
    # behind them in the buffer is finished from the totals, not blocked by them
    accounted_heads: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class PumpView:
    fp_state: FPState
    volume_totals: Mapping[int, int]  # nozzle -> mL, read now
    boot_count: int
    head_sale_token: int | None  # token of the payable buffer's head sale, if any
    cur_auth_token: int
    head_sale_seq: int | None = None  # the payable buffer's head, if any


@dataclass(frozen=True, slots=True)
class Recovery:
    action: Action
    rule: str  # which row matched
    moved: Mapping[int, int]  # nozzle -> mL dispensed since the reference totals
    boot_changed: bool


def moved_since(reference: Mapping[int, int], now: Mapping[int, int]) -> dict[int, int]:
    """Per-nozzle volume since ``reference``; a nozzle whose total went *down* is reported
    as negative (a replaced pump or a corrupt read), which no rule treats as a sale."""
    return {n: now[n] - reference.get(n, now[n]) for n in now if now[n] != reference.get(n, now[n])}


def _sale_moved(journal: JournalView, pump: PumpView) -> dict[int, int]:
    sale = journal.open_sale
    assert sale is not None
    start = dict(journal.known_volume_totals)
    start.update(sale.start_volume_totals)
    return moved_since(start, pump.volume_totals)


Condition = Callable[[JournalView, PumpView], bool]

LIVE: Final = frozenset(
    {
        FPState.AUTHORIZED,
        FPState.STARTED,
        FPState.SUSPENDED_STARTED,
        FPState.FUELLING,
        FPState.SUSPENDED_FUELLING,
    }
)


def _ours_heads_the_buffer(j: JournalView, p: PumpView) -> bool:
    """Our sale ended in the pump: COMPLETED, or a zero sale (STOP before flow, the
    authorization timed out: the point is back to IDLE/CALLING), or ended by a fault
    (pulser error, emergency stop: the point is INOPERATIVE). The sale block has it all."""
    sale = j.open_sale
    return sale is not None and p.head_sale_token == sale.token and not _live_with_our_token(j, p)


def _live_with_our_token(j: JournalView, p: PumpView) -> bool:
    sale = j.open_sale
    return sale is not None and p.fp_state in LIVE and p.cur_auth_token == sale.token


def _head_is_not_ours(j: JournalView, p: PumpView) -> bool:
    sale = j.open_sale
    return (
        sale is not None
        and p.fp_state is FPState.COMPLETED
        and p.head_sale_token != sale.token
        and p.head_sale_seq not in j.accounted_heads
    )


def _open_and_moved(j: JournalView, p: PumpView) -> bool:
    return j.open_sale is not None and any(v > 0 for v in _sale_moved(j, p).values())


def _open(j: JournalView, p: PumpView) -> bool:
    return j.open_sale is not None


def _unexplained_sale(j: JournalView, p: PumpView) -> bool:
    moved = moved_since(j.known_volume_totals, p.volume_totals)
    return p.fp_state is FPState.COMPLETED or any(v > 0 for v in moved.values())


def _always(j: JournalView, p: PumpView) -> bool:
    return True


RULES: Final[tuple[tuple[str, Condition, Action], ...]] = (
    # (row of the spec's table, condition, action): the first match wins.
    # The spec's row is "COMPLETED with our token"; a zero sale or a sale ended by a fault
    # also heads the buffer with our token, and its sale block is as good.
    (
        "open sale, our sale heads the pump's buffer",
        _ours_heads_the_buffer,
        Action.FINISH_FROM_SALE_BLOCK,
    ),
    ("open sale, pump AUTHORIZED or FUELLING with our token", _live_with_our_token, Action.ADOPT),
    # Not in the spec's table: a completed sale ahead of ours in the payable buffer must be
    # taken out (as an orphan, or cleared if it is an earlier sale of ours) before our own
    # sale can be told from the totals - unless it is journaled already (a payable sale
    # waiting for its customer): then ours is finished from the totals behind it.
    ("open sale, pump COMPLETED with a sale not ours", _head_is_not_ours, Action.ORPHAN),
    ("open sale, pump idle, totals moved", _open_and_moved, Action.FINISH_FROM_TOTALS),
    ("open sale, pump idle, totals == start totals", _open, Action.VOID),
    ("no open sale, pump COMPLETED or totals moved", _unexplained_sale, Action.ORPHAN),
    ("no open sale, nothing moved", _always, Action.NOTHING),
)


def decide(journal: JournalView, pump: PumpView) -> Recovery:
    boot_changed = journal.boot_count is not None and journal.boot_count != pump.boot_count
    for rule, condition, action in RULES:
        if condition(journal, pump):
            if journal.open_sale is not None:
                moved = _sale_moved(journal, pump)
            else:
                moved = moved_since(journal.known_volume_totals, pump.volume_totals)
            return Recovery(action, rule, moved, boot_changed)
    raise AssertionError("the last rule always matches")
