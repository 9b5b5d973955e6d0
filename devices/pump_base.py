"""The PumpActor's common ground: its state, the journal, subscribers, alerts, the poll timer.

The actor is assembled from mixins over this base (sales in :mod:`devices.pump_sales`,
prices, open/close and operator commands in :mod:`devices.pump_admin`, the poll loop and
the call table in :mod:`devices.pump`); they share what is here and nothing else.

Every state change goes through :meth:`PumpBase._record`: journal first (the await
returns once committed), then the in-memory ledger follows by the same ``apply`` that
folds the stream at start, then subscribers hear of it. So what the actor believes is
always what a restarted actor would rebuild from the journal.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from actors import Actor, ActorNotFound, MailboxFull, Timer
from switch.store.journal import Event, Journal

from .driver import PumpDriver
from .gfd1.codec import NozzleTotals, StatusBlock
from .poll_stats import PollLatency
from .pump_journal import PumpLedger, apply
from .pump_messages import PUBLISHED, AlertKind, Poll, PumpEvent
from .recovery import PumpView

log = structlog.get_logger("devices")


def volumes(totals: tuple[NozzleTotals, ...]) -> dict[int, int]:
    """Nozzle -> volume total (mL), nozzle 1 first."""
    return {n: t.volume_ml for n, t in enumerate(totals, start=1)}


def amounts(totals: tuple[NozzleTotals, ...]) -> dict[int, int]:
    """Nozzle -> amount total (fen)."""
    return {n: t.amount_fen for n, t in enumerate(totals, start=1)}


def as_payload(by_nozzle: Mapping[int, int]) -> dict[str, int]:
    """JSON objects have string keys."""
    return {str(n): v for n, v in by_nozzle.items()}


def pump_view(status: StatusBlock, totals: tuple[NozzleTotals, ...]) -> PumpView:
    head = status.last_sale
    return PumpView(
        status.fp_state,
        volumes(totals),
        status.boot_count,
        head.auth_token if head is not None else None,
        status.cur_auth_token,
        head.seq if head is not None else None,
    )


def next_poll(
    ideal: float, interval: float, now: float, quantum: float, phase: float | None = None
) -> tuple[float, float]:
    """The fixed-rate schedule's next point, and when to poll for it: ``(ideal, due)``.

    ``ideal`` advances by ``interval`` from where it was (``-inf`` before the first poll,
    which sets the phase), restarting from ``now`` when it fell behind; ``due`` is it
    rounded up to the grid of ``quantum`` (at most a quarter of the interval).

    With a ``phase`` (a fraction of the interval), the schedule is instead held on the
    beat ``phase * interval + k * interval``: the beat nearest the next point, never
    before ``now``. Pumps given the same phase poll at the same instant, whatever they
    did before; one that comes off another rate joins the beat after 0.5 to 1.5 intervals.
    """
    ideal = now + interval if ideal == -math.inf else max(ideal + interval, now)
    if phase is not None and interval > 0:
        beat = phase * interval
        aligned = beat + round((ideal - beat) / interval) * interval
        if aligned < now:
            aligned += interval
        return aligned, aligned
    step = min(quantum, interval / 4)
    due = math.ceil(ideal / step) * step if step > 0 else ideal
    return ideal, due


def rest_interval(
    idle: float, quiet: float | None, quiet_after: float, changed_at: float, now: float
) -> float:
    """The poll interval of a point without a sale: ``idle``, or ``quiet`` once nothing
    changed (and no command went out) for ``quiet_after`` seconds."""
    if quiet is None or now - changed_at < quiet_after:
        return idle
    return quiet


def status_changed(before: StatusBlock | None, now: StatusBlock) -> bool:
    """Whether the point changed in a way that ends its quiet: its state (a nozzle lifted,
    a stand-alone sale), its payable buffer, its prices or an error. Live figures (volume,
    amount) move only in states that already changed."""
    if before is None:
        return True
    return (before.fp_state, before.unpaid_count, before.price_set_id, before.error_code) != (
        now.fp_state,
        now.unpaid_count,
        now.price_set_id,
        now.error_code,
    )


class PumpBase(Actor):
    def __init__(
        self,
        driver: PumpDriver,
        journal: Journal,
        *,
        stream_id: str,
        active_poll_s: float = 0.25,
        idle_poll_s: float = 1.0,
        quiet_poll_s: float | None = None,
        quiet_after_s: float = 30.0,
        progress_interval_s: float = 1.0,
        unreachable_alert_s: float = 30.0,
        offline_after_polls: int = 3,
        poll_quantum_s: float = 0.1,
    ) -> None:
        self.driver = driver
        self.protocol: str = getattr(driver, "protocol", "gfd1")  # the metrics' label
        self.poll_latency = PollLatency()  # this pump's recent polls, for operators
        self.journal = journal
        self.stream_id = stream_id
        self.active_poll_s = active_poll_s  # while a sale is open
        self.idle_poll_s = idle_poll_s
        # A pump at rest this long (nothing changed, no command) is polled every
        # ``quiet_poll_s`` instead (None: never). Most of a large chain's pumps are at rest
        # most of the time, and their polls were most of the switch's CPU when idle.
        self.quiet_poll_s = quiet_poll_s
        self.quiet_after_s = quiet_after_s
        self._changed_at = -math.inf  # trio time of the last change seen or command sent
        self.progress_interval_s = progress_interval_s  # fuelling progress to subscribers
        self.unreachable_alert_s = unreachable_alert_s
        self.offline_after_polls = offline_after_polls  # the spec: OFFLINE after 3 polls
        self.poll_quantum_s = poll_quantum_s  # scheduled polls fall on this grid
        self.ledger = PumpLedger()
        self.status: StatusBlock | None = None
        self.subscribers: set[str] = set()
        self.last_error: str | None = None
        self.polls = 0
        self.failed_polls = 0  # in a row
        self.recovered: str | None = None  # the restart rule applied; None until it ran
        self.dropped_events = 0  # not delivered: a subscriber's mailbox was full
        self._poll_timer: Timer | None = None
        self._poll_again = False  # the poll changed something: look again at once
        self._poll_ideal = -math.inf  # the fixed-rate schedule, before rounding to the grid
        self._poll_phase: float | None = None  # the station's beat for idle polls
        self._unreachable_since: float | None = None
        self._unreachable_alerted = False
        self._last_progress = -math.inf
        self._close_sent = False  # CLOSE accepted (the pump may hold it until collected)

    def _bind_log_context(self) -> None:
        """Every log line of this actor's task (and the tasks it starts) names the pump."""
        parts = self.address.parts  # stations/<station>/<pump> in the switch
        station = {"station": parts[1]} if len(parts) == 3 and parts[0] == "stations" else {}
        structlog.contextvars.bind_contextvars(pump=str(self.address), **station)

    # -- journal and subscribers ---------------------------------------------------------

    async def _record(self, kind: str, data: Mapping[str, Any], *, terminal: bool = False) -> None:
        head = await self.journal.append(
            self.stream_id, [Event(kind, data)], expected_seq=self.ledger.seq, terminal=terminal
        )
        self.ledger = apply(self.ledger, head, kind, data)
        if kind in PUBLISHED:
            self._publish(kind, data)

    def _publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if not self.subscribers:
            return
        event = PumpEvent(str(self.address), kind, dict(data))
        for address in list(self.subscribers):
            try:
                self.cast(address, event)
            except MailboxFull:
                self.dropped_events += 1  # a slow subscriber misses one, and stays
            except ActorNotFound:
                self.subscribers.discard(address)

    async def _alert(
        self, kind: AlertKind, detail: str, *, sale: str | None = None, **data: Any
    ) -> None:
        """Journaled (so a restarted actor lists it too), logged, and published."""
        log.warning("pump.alert", pump=str(self.address), kind=kind.value, detail=detail)
        payload = {
            "kind": kind.value,
            "detail": detail,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "sale": sale,
            **data,
        }
        await self._record("alert", payload)

    # -- what the actor knows ------------------------------------------------------------

    @property
    def sale_id(self) -> str | None:
        sale = self.ledger.open_sale
        return sale.sale_id if sale is not None else None

    def _at_rest(self) -> bool:
        """No sale open and nothing left to clear: the switch has nothing in the pump."""
        return self.ledger.open_sale is None and self.ledger.pending_clear is None

    # -- the poll timer ------------------------------------------------------------------

    def _poll_soon(self, delay: float = 0.0) -> None:
        """A poll after ``delay`` (sooner if one is due sooner), asked for by a command or a
        change: the pump is not quiet any more either."""
        self._changed_at = trio.current_time()
        self._arm_poll(delay)

    def _arm_poll(self, delay: float) -> None:
        """Poll after ``delay`` unless a poll is due sooner: one Poll in flight, ever.

        (A second timer chain would double the poll rate for good.)
        """
        timer = self._poll_timer
        if timer is not None:
            if not timer.active:
                return  # fired: the Poll is in the mailbox already
            if timer.deadline <= trio.current_time() + delay:
                return
            timer.cancel()
        self._poll_timer = self.send_after(delay, Poll())

    def _next_poll(self) -> None:
        """After a poll: the next one at the rate the point's state calls for, or at once
        if the poll changed something (``_poll_again``).

        The rate is fixed (the schedule advances by the interval from where it was, not
        from when the poll ended, so a slow reply does not stretch the period) and each
        poll is rounded up to a grid of ``poll_quantum_s`` (at most a quarter of the
        interval). Pumps whose polls fall on the same tick have their reads queued in
        the same scheduler pass, and their station's client sends them in one write and
        usually reads the replies in one receive: two system calls shared by a dozen
        polls instead of two per poll, which is most of a poll's cost. A schedule that
        fell behind (a long command) restarts from now instead of catching up in a burst.
        """
        self._poll_timer = None
        live = self.ledger.open_sale is not None or self.ledger.pending_clear is not None
        interval = self.active_poll_s if live else self._rest_interval()
        if self._poll_again:
            self._poll_again = False
            self._poll_soon(0.0)
            return
        now = trio.current_time()
        if self._poll_ideal > now:
            # This poll came before its point (a command asked for it): the schedule
            # starts again from it, or a quiet pump just woken would wait out its quiet
            # interval before the next poll, sale or not.
            self._poll_ideal = now
        phase = None if live else self._station_phase()
        self._poll_ideal, due = next_poll(
            self._poll_ideal, interval, now, self.poll_quantum_s, phase
        )
        self._arm_poll(max(0.0, due - now))

    def _rest_interval(self) -> float:
        return rest_interval(
            self.idle_poll_s,
            self.quiet_poll_s,
            self.quiet_after_s,
            self._changed_at,
            trio.current_time(),
        )

    def _noticed(self, before: StatusBlock | None, now: StatusBlock) -> None:
        """A poll that shows the point changed ends the quiet."""
        if status_changed(before, now):
            self._changed_at = trio.current_time()

    def _station_phase(self) -> float:
        """Where in the idle interval this pump's station polls, from the station's name.

        Idle pumps of one station poll together, on the station's beat: their requests
        leave in one write and the gateway's replies come back in one read, on both
        sides of the wire, instead of a write and a read per pump spread over the grid
        (with thousands of idle pumps, system calls and wake-ups were most of the cost).
        The stations' beats are spread over the interval by a hash of their names, so
        the chain does not poll in one burst. Pumps outside a station share their
        supervisor's beat.
        """
        if self._poll_phase is None:
            parent = "/".join(self.address.parts[:-1]) or str(self.address)
            self._poll_phase = zlib.crc32(parent.encode()) / 2**32
        return self._poll_phase

    # -- reachability ----------------------------------------------------------------------

    def _reachable(self) -> None:
        if self.offline:
            self.status = None  # back from OFFLINE: the next poll announces the state
        self.failed_polls = 0
        self.last_error = None
        self._unreachable_since = None
        self._unreachable_alerted = False

    async def _unreachable(self, error: Exception) -> None:
        """A poll failed. OFFLINE after a few in a row; an alert once it lasts."""
        self.failed_polls += 1
        self.last_error = str(error)
        now = trio.current_time()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if self.failed_polls == self.offline_after_polls:
            self._publish("state", {"state": "OFFLINE"})
        down_for = now - self._unreachable_since
        if down_for >= self.unreachable_alert_s and not self._unreachable_alerted:
            self._unreachable_alerted = True
            await self._alert(
                AlertKind.UNREACHABLE,
                f"no answer for {down_for:.0f}s: {error}",
                sale=self.sale_id,
            )

    @property
    def offline(self) -> bool:
        return self.failed_polls >= self.offline_after_polls
