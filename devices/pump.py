"""PumpActor: the one piece of code that commands a fuelling point.

Theory of operation
-------------------
Write-ahead, always (ARCHITECTURE.md invariant 1, the GFD-1 spec's rules): before
AUTHORIZE the start totals and ``auth_requested`` (sale id, token, preset, price set) are
journaled; ``authorized`` once the pump acknowledged; ``fuelling`` at first flow; at
COMPLETED the sale block and end totals are read, the totals invariant checked, and
``completed`` journaled - only then CLEAR_SALE, then ``cleared``. A crash anywhere leaves
the journal one step behind the pump at most, and ``init`` closes that gap with the
restart table (:mod:`devices.recovery`) before the actor is reported started: it never
authorizes twice, never loses litres, and alerts on every sale it did not expect.

The actor polls (``active_poll_s`` while a sale is live, ``idle_poll_s`` otherwise),
publishes changes to subscribers' addresses, and answers calls one at a time, so a
command can never interleave with a completion.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from actors import NOREPLY, Actor, ActorNotFound, MailboxFull, Reply, UnhandledMessage
from switch.store.journal import Event, Journal

from .crashpoints import crash_point
from .driver import CommandRefused, DriverError, PumpDriver, PumpUnreachable
from .gfd1.codec import NozzleTotals, SaleRecord, StatusBlock
from .gfd1.states import FPState, PresetType
from .pump_journal import PumpLedger, apply, fold
from .recovery import Action, PumpView, decide

log = structlog.get_logger("devices")

LIVE_STATES = frozenset(
    {FPState.AUTHORIZED, FPState.STARTED, FPState.FUELLING, FPState.SUSPENDED_FUELLING}
)


# -- messages ----------------------------------------------------------------------------


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
    pass


@dataclass(frozen=True, slots=True)
class Subscribe:
    address: str


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """Cast to subscribers: ``kind`` is calling, authorized, fuelling, completed, void,
    orphan, state or alert."""

    pump: str
    kind: str
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Poll:
    pass


class PumpBusy(Exception):
    """The pump is not in a state that allows this (a sale is open, or it is closed)."""


# -- the actor ---------------------------------------------------------------------------


class PumpActor(Actor):
    def __init__(
        self,
        driver: PumpDriver,
        journal: Journal,
        *,
        stream_id: str,
        active_poll_s: float = 0.25,
        idle_poll_s: float = 1.0,
    ) -> None:
        self.driver = driver
        self.journal = journal
        self.stream_id = stream_id
        self.active_poll_s = active_poll_s
        self.idle_poll_s = idle_poll_s
        self.ledger = PumpLedger()
        self.status: StatusBlock | None = None
        self.subscribers: set[str] = set()
        self.last_error: str | None = None
        self.polls = 0
        self.recovered: str | None = None

    # -- journal ---------------------------------------------------------------------------

    async def _record(self, kind: str, data: Mapping[str, Any], *, terminal: bool = False) -> None:
        head = await self.journal.append(
            self.stream_id, [Event(kind, data)], expected_seq=self.ledger.seq, terminal=terminal
        )
        self.ledger = apply(self.ledger, head, kind, data)
        self._publish(kind, data)

    def _publish(self, kind: str, data: Mapping[str, Any]) -> None:
        event = PumpEvent(str(self.address), kind, dict(data))
        for address in list(self.subscribers):
            try:
                self.cast(address, event)
            except (MailboxFull, ActorNotFound):
                self.subscribers.discard(address)

    async def _alert(self, kind: str, detail: str, **data: Any) -> None:
        log.warning("pump.alert", pump=str(self.address), kind=kind, detail=detail)
        await self._record("alert", {"kind": kind, "detail": detail, **data})

    # -- start: recovery before anything else ------------------------------------------------

    async def init(self) -> None:
        self.ledger = fold(await self.journal.load(self.stream_id))
        if self.ledger.pending_clear is not None:
            # ``completed`` is journaled: finish the clear first, so that the sale still at
            # the head of the pump's buffer is not taken for a stranger's.
            await self._clear_pending()
        status = await self.driver.status()
        totals = await self.driver.totals()
        self.status = status
        volume = {n: t.volume_ml for n, t in enumerate(totals, start=1)}
        if self.ledger.boot_count is None:
            await self._record("contact", self._contact(status, totals))
        view = PumpView(
            status.fp_state,
            volume,
            status.boot_count,
            status.last_sale.auth_token if status.last_sale else None,
            status.cur_auth_token,
        )
        recovery = decide(self.ledger.journal_view(), view)
        self.recovered = recovery.action.name
        if recovery.boot_changed:
            await self._alert(
                "boot_count_changed",
                f"BOOT_COUNT {self.ledger.boot_count} -> {status.boot_count}: "
                "reconciled from totals",
            )
            await self._record("contact", self._contact(status, totals))
        await self._carry_out(recovery.action, status, totals, dict(recovery.moved))
        self.send_after(0, Poll())

    @staticmethod
    def _contact(status: StatusBlock, totals: tuple[NozzleTotals, ...]) -> dict[str, Any]:
        return {
            "boot_count": status.boot_count,
            "totals": {str(n): t.volume_ml for n, t in enumerate(totals, start=1)},
        }

    async def _carry_out(
        self,
        action: Action,
        status: StatusBlock,
        totals: tuple[NozzleTotals, ...],
        moved: dict[int, int],
    ) -> None:
        sale = self.ledger.open_sale
        if action is Action.FINISH_FROM_SALE_BLOCK and status.last_sale is not None:
            await self._complete(status.last_sale, totals)
        elif action is Action.FINISH_FROM_TOTALS and sale is not None:
            nozzle, volume = max(moved.items(), key=lambda kv: kv[1])
            await self._record(
                "completed",
                {
                    "sale_id": sale.sale_id,
                    "pump_sale_seq": 0,
                    "nozzle": nozzle,
                    "volume_ml": volume,
                    "amount_fen": None,
                    "end_totals": {str(n): t.volume_ml for n, t in enumerate(totals, start=1)},
                    "reconstructed": True,
                },
            )
            await self._alert("sale_reconstructed", f"{sale.sale_id} finished from totals")
        elif action is Action.VOID and sale is not None:
            await self._record("void", {"sale_id": sale.sale_id, "reason": "no fuel dispensed"})
        elif action is Action.ORPHAN:
            await self._orphan(status, totals, moved)
        # ADOPT and NOTHING: the poll loop carries on watching.

    async def _orphan(
        self, status: StatusBlock, totals: tuple[NozzleTotals, ...], moved: dict[int, int]
    ) -> None:
        head = status.last_sale
        data: dict[str, Any] = {
            "sale_id": f"orphan-{secrets.token_hex(6)}",
            "moved": {str(n): v for n, v in moved.items()},
            "end_totals": {str(n): t.volume_ml for n, t in enumerate(totals, start=1)},
        }
        if head is not None and status.fp_state is FPState.COMPLETED:
            data.update(
                pump_sale_seq=head.seq, volume_ml=head.volume_ml, amount_fen=head.amount_fen
            )
        await self._record("orphan", data)
        await self._alert(
            "orphan_sale", "a sale the switch did not authorize", sale=data["sale_id"]
        )

    # -- the sale ------------------------------------------------------------------------------

    async def _authorize(self, msg: Authorize) -> Authorized:
        if self.ledger.open_sale is not None or self.ledger.pending_clear is not None:
            raise PumpBusy(f"{self.address} has an open sale")
        token = secrets.randbelow(0xFFFFFFFF) + 1
        totals = await self.driver.totals()
        nozzles = [
            n
            for n in range(1, len(totals) + 1)
            if not msg.nozzle_mask or msg.nozzle_mask >> (n - 1) & 1
        ]
        await self._record(
            "auth_requested",
            {
                "sale_id": msg.sale_id,
                "order_id": msg.order_id,
                "token": token,
                "nozzles": nozzles,
                "nozzle_mask": msg.nozzle_mask,
                "preset_type": int(msg.preset_type),
                "preset_value": msg.preset_value,
                "price_set_id": self.status.price_set_id if self.status else None,
                "start_totals": {str(n): totals[n - 1].volume_ml for n in nozzles},
            },
        )
        crash_point("pump.after_auth_requested")
        try:
            await self.driver.authorize(
                token=token,
                nozzle_mask=msg.nozzle_mask,
                preset_type=msg.preset_type,
                preset_value=msg.preset_value,
            )
        except CommandRefused as exc:
            await self._record("void", {"sale_id": msg.sale_id, "reason": str(exc)})
            raise
        crash_point("pump.after_authorize")
        await self._record("authorized", {"sale_id": msg.sale_id, "token": token})
        self.send_after(0, Poll())
        return Authorized(msg.sale_id, token)

    async def _complete(self, head: SaleRecord, totals: tuple[NozzleTotals, ...]) -> None:
        sale = self.ledger.open_sale
        assert sale is not None
        end = totals[head.nozzle - 1].volume_ml
        delta = end - sale.start_volume_totals.get(head.nozzle, head.start_volume_total_ml)
        totals_ok = abs(delta - head.volume_ml) <= 1 and head.end_volume_total_ml == end
        await self._record(
            "completed",
            {
                "sale_id": sale.sale_id,
                "pump_sale_seq": head.seq,
                "nozzle": head.nozzle,
                "volume_ml": head.volume_ml,
                "amount_fen": head.amount_fen,
                "unit_price": head.unit_price,
                "end_reason": int(head.end_reason),
                "price_set_id": head.price_set_id,
                "end_totals": {str(n): t.volume_ml for n, t in enumerate(totals, start=1)},
                "reconstructed": False,
                "totals_ok": totals_ok,
            },
        )
        crash_point("pump.after_completed")
        if not totals_ok:
            await self._alert(
                "totals_mismatch",
                f"sale {head.seq}: totals moved {delta} mL, sale block says {head.volume_ml} mL",
            )
        await self._clear_pending()

    async def _clear_pending(self) -> None:
        pending = self.ledger.pending_clear
        assert pending is not None
        try:
            await self.driver.clear_sale(pending.pump_sale_seq)
        except CommandRefused as exc:
            # Already cleared (a crash between CLEAR_SALE and ``cleared``): the head moved on.
            status = await self.driver.status()
            if status.last_sale is not None and status.last_sale.seq == pending.pump_sale_seq:
                raise
            log.info("pump.clear_already_done", pump=str(self.address), detail=str(exc))
        await self._record(
            "cleared", {"sale_id": pending.sale_id, "pump_sale_seq": pending.pump_sale_seq}
        )

    # -- polling -------------------------------------------------------------------------------

    async def handle_info(self, msg: Any) -> None:
        if not isinstance(msg, Poll):
            await super().handle_info(msg)
            return
        try:
            await self._poll()
            self.last_error = None
        except DriverError as exc:
            self.last_error = str(exc)
        live = self.ledger.open_sale is not None
        self.send_after(self.active_poll_s if live else self.idle_poll_s, Poll())

    async def _poll(self) -> None:
        self.polls += 1
        status = await self.driver.status()
        previous, self.status = self.status, status
        if previous is None or previous.fp_state is not status.fp_state:
            self._publish("state", {"state": status.fp_state.name})
        sale = self.ledger.open_sale
        if sale is None:
            head = status.last_sale
            if (
                status.fp_state is FPState.COMPLETED
                and head is not None
                and self.ledger.pending_clear is None
                and head.seq not in self.ledger.orphan_seqs
            ):
                await self._orphan(status, await self.driver.totals(), {})
            return
        if status.fp_state in LIVE_STATES and status.cur_auth_token == sale.token:
            if status.fp_state is FPState.FUELLING and self.ledger.open_sale_state != "fuelling":
                await self._record(
                    "fuelling", {"sale_id": sale.sale_id, "nozzle": status.active_nozzle}
                )
                crash_point("pump.fuelling")
            return
        if self.ledger.open_sale_state == "auth_requested":
            return  # the authorize call in flight decides
        totals = await self.driver.totals()
        view = PumpView(
            status.fp_state,
            {n: t.volume_ml for n, t in enumerate(totals, start=1)},
            status.boot_count,
            status.last_sale.auth_token if status.last_sale else None,
            status.cur_auth_token,
        )
        recovery = decide(self.ledger.journal_view(), view)
        await self._carry_out(recovery.action, status, totals, dict(recovery.moved))

    # -- calls ---------------------------------------------------------------------------------

    async def handle_call(self, msg: Any, reply: Reply) -> Any:
        if isinstance(msg, Authorize):
            try:
                return await self._authorize(msg)
            except (PumpBusy, CommandRefused, PumpUnreachable) as exc:
                reply.fail(exc)
                return NOREPLY
        if isinstance(msg, Stop):
            await self.driver.stop()
            return None
        if isinstance(msg, Subscribe):
            self.subscribers.add(msg.address)
            return self.snapshot()
        raise UnhandledMessage("call", msg)

    def snapshot(self) -> dict[str, Any]:
        status = self.status
        sale = self.ledger.open_sale
        return {
            "state": status.fp_state.name if status else None,
            "open_sale": sale.sale_id if sale else None,
            "open_sale_state": self.ledger.open_sale_state,
            "pending_clear": self.ledger.pending_clear.sale_id
            if self.ledger.pending_clear
            else None,
            "boot_count": status.boot_count if status else None,
            "sales": self.ledger.sales,
            "alerts": self.ledger.alerts,
            "polls": self.polls,
            "last_error": self.last_error,
            "recovered": self.recovered,
            "driver": self.driver.statistics(),
        }
