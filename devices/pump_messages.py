"""What goes into and comes out of a PumpActor: calls, their replies, events, errors.

Calls (``system.call(pump, msg)``) and what they answer:

=================  ======================================================================
Authorize          :class:`Authorized`; refused with :class:`PumpClosed` (closed or
                   closing), :class:`PumpBusy` (a sale open or uncollected, the point not
                   at rest), ``PumpUnreachable`` or ``CommandRefused``
Stop               None once the pump took STOP (the sale then ends and settles as usual)
Suspend, Resume    None once the pump confirmed
EmergencyStop      None: the point is INOPERATIVE until ResetError; alerted
ResetError         None (RESET_ERROR: the pump leaves INOPERATIVE)
SetPrices          :class:`PriceChange`: applied now, or pending until no sale is open
Close              :class:`Admin`: CLOSED, or CLOSING until the buffer is collected
Open               :class:`Admin` OPEN
Subscribe          the actor's snapshot; :class:`PumpEvent` casts follow
Unsubscribe        None
SaleStatus         :class:`SaleReport` from memory, or the journal for old sales (never
                   the pump); :class:`LookupFailed` if the journal cannot be read
PayableSales       ``tuple[PayableSale, ...]`` in the pump's buffer, head first (no pump I/O)
LockSale           the :class:`PayableSale` locked for the order; :class:`SaleNotPayable`
                   unless it heads the buffer and no other order holds it; again by the
                   same order: answered at once
UnlockSale         None; another order may lock the sale (GFD-1 has no unlock command)
CollectSale        None once CLEAR_SALE took the sale out of the buffer; only by the order
                   holding the lock (:class:`SaleNotPayable`); again: None (also if the
                   sale was cleared at the console while the order held it: alerted)
PumpInfo           :class:`PumpInfoReply` from the last status and the journal (no pump I/O)
=================  ======================================================================

``Authorize`` is idempotent by ``sale_id``: the open sale's id answers its
:class:`Authorized` again without a word to the pump, and the id of a sale that has
finished (completed or void) raises :class:`SaleFinished`, so that a recovering order
learns it must look the sale up (``SaleStatus``) rather than authorize it again.

A refused call fails the caller's ``await`` with the error and leaves the actor running:
refusals are the pump's business, not a reason to restart.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from actors import ActorError

from .gfd1.states import PresetType
from .pump_book import PayableSale, SalePhase, SaleReport
from .pump_journal import Admin

__all__ = [
    "PUBLISHED",
    "Admin",
    "AlertKind",
    "Authorize",
    "Authorized",
    "Close",
    "CollectSale",
    "EmergencyStop",
    "LockSale",
    "LookupFailed",
    "Open",
    "PayableSale",
    "PayableSales",
    "Poll",
    "PriceChange",
    "PumpBusy",
    "PumpClosed",
    "PumpEvent",
    "PumpInfo",
    "PumpInfoReply",
    "ResetError",
    "Resume",
    "SaleFinished",
    "SaleNotPayable",
    "SalePhase",
    "SaleReport",
    "SaleStatus",
    "SetPrices",
    "Stop",
    "Subscribe",
    "Suspend",
    "UnlockSale",
    "Unsubscribe",
]


# -- calls ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorize:
    sale_id: str
    preset_type: PresetType
    preset_value: int
    nozzle_mask: int = 0
    order_id: str | None = None


@dataclass(frozen=True, slots=True)
class Authorized:
    sale_id: str
    token: int


@dataclass(frozen=True, slots=True)
class Stop:
    """End the sale now (STOP); it settles through the usual completion path."""


@dataclass(frozen=True, slots=True)
class Suspend:
    """Pause the flow of the sale in progress (SUSPEND)."""


@dataclass(frozen=True, slots=True)
class Resume:
    """Let a suspended sale flow again (RESUME)."""


@dataclass(frozen=True, slots=True)
class EmergencyStop:
    reason: str = "operator"


@dataclass(frozen=True, slots=True)
class ResetError:
    """Clear the pump's error after the cause was dealt with (RESET_ERROR)."""


@dataclass(frozen=True, slots=True)
class SetPrices:
    """Unit prices in milli-fen per litre, nozzle 1 first, as price set ``price_set_id``."""

    price_set_id: int
    prices: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PriceChange:
    price_set_id: int
    applied: bool  # False: pending, applied by the poll loop once no sale is open


@dataclass(frozen=True, slots=True)
class Close:
    """Close the point once the switch has nothing left in it; answers the admin state."""


@dataclass(frozen=True, slots=True)
class Open:
    """Open a closed (or closing) point."""


@dataclass(frozen=True, slots=True)
class Subscribe:
    address: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    address: str


# -- lookups and post-pay ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaleStatus:
    """How did (or does) sale ``sale_id`` go? Answers a :class:`SaleReport`."""

    sale_id: str


@dataclass(frozen=True, slots=True)
class PayableSales:
    """The post-pay sales waiting in the pump's buffer, head first."""


@dataclass(frozen=True, slots=True)
class LockSale:
    """Reserve the payable sale ``pump_sale_seq`` for ``order_id`` (LOCK_SALE)."""

    pump_sale_seq: int
    order_id: str


@dataclass(frozen=True, slots=True)
class UnlockSale:
    """Give the sale up (the order failed or was cancelled): another order may lock it."""

    pump_sale_seq: int
    order_id: str


@dataclass(frozen=True, slots=True)
class CollectSale:
    """The order paid: take the sale out of the pump's buffer (CLEAR_SALE)."""

    pump_sale_seq: int
    order_id: str


@dataclass(frozen=True, slots=True)
class PumpInfo:
    """What the API shows for a pump; answered from memory."""


@dataclass(frozen=True, slots=True)
class PumpInfoReply:
    pump: str  # the actor's address
    fp_state: str  # lower-case FPState name, or "offline"
    online: bool
    admin: str  # open | closing | closed
    open_sale: str | None  # sale id
    open_sale_order: str | None  # its order id
    payable: tuple[PayableSale, ...]
    nozzles: int
    price_set_id: int | None
    last_error: str | None


# -- out and internal ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """Cast to subscribers. ``kind``: ``state`` (every FP state change), ``calling``,
    ``authorized``, ``fuelling`` (first flow, then progress at most once a second with
    volume and amount), ``completed``, ``void``, ``orphan``, ``alert``, ``prices_applied``,
    ``closed``, ``opened``; post-pay: ``payable``, ``locked``, ``unlocked``, ``collected``,
    ``payable_gone`` (their journal payloads)."""

    pump: str
    kind: str
    data: Mapping[str, Any]


# Journal event types that subscribers also get, as they are journaled.
PUBLISHED: Final = frozenset(
    {
        "authorized",
        "fuelling",
        "completed",
        "void",
        "orphan",
        "alert",
        "prices_applied",
        "closed",
        "opened",
        "payable",
        "locked",
        "unlocked",
        "collected",
        "payable_gone",
    }
)


@dataclass(frozen=True, slots=True)
class Poll:
    """Timer tick: read the pump now."""


class AlertKind(enum.StrEnum):
    ORPHAN_SALE = "orphan_sale"  # a sale in the pump the switch did not authorize
    TOTALS_MISMATCH = "totals_mismatch"  # totals moved other than the sale block says
    SALE_RECONSTRUCTED = "sale_reconstructed"  # finished from totals: the sale block was lost
    BOOT_COUNT_CHANGED = "boot_count_changed"  # the pump powered up again
    PUMP_ERROR = "pump_error"  # ERROR_CODE != 0 (once per occurrence)
    EMERGENCY_STOP = "emergency_stop"  # this actor sent EMERGENCY_STOP
    TOTALS_GAP = "totals_gap"  # start totals differ from the last known end totals
    UNREACHABLE = "unreachable"  # no answer for longer than the threshold
    PAYABLE_GONE = "payable_gone"  # a locked post-pay sale was cleared outside the switch


# -- errors to the caller -----------------------------------------------------------------


class PumpBusy(Exception):
    """The pump is not in a state that allows this (a sale is open, or it is closed)."""


class PumpClosed(PumpBusy):
    """The point is closed, or closing: no new sale until Open()."""


class SaleFinished(PumpBusy):
    """``Authorize`` named a sale that has already ended: ask ``SaleStatus`` how."""

    def __init__(self, sale_id: str) -> None:
        super().__init__(f"sale {sale_id} has finished")
        self.sale_id = sale_id


class SaleNotPayable(PumpBusy):
    """The post-pay sale is not there to lock or collect (gone, not the buffer's head,
    or held by another order)."""


class LookupFailed(ActorError):
    """The journal could not be read to answer a lookup. An :class:`ActorError` because,
    to the caller, it is the same as a pump actor that did not answer: nothing was done,
    ask again later."""
