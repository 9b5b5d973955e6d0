"""The switch process: servers, store, actor tree, HTTP, recovery, in that order.

``fuelswitch serve --config switch.toml`` runs :class:`SwitchProcess` until SIGTERM/SIGINT.
Start-up order matters for crash safety: the journal writer and the pumps come up (each pump
runs its restart table in ``init``) before any order is re-driven, and the channels (with the
operators' disabled channels kept disabled) before the orders that will query them; the HTTP
server opens once all of these are up, so a provider's callback or a customer never reaches a
switch that cannot act on it. The orders left open by the last run are re-driven in the
background from then on: each is an actor whose first step looks things up before anything is
re-sent, and a message for one not started yet starts it, so the switch need not wait for all
of them before it is ready. The ready line (one JSON object on stdout) names the HTTP URL and
the database, for the demo, tests and operators; the ``switch.ready`` log line says how long
each step of the start took.

Stopping is the same order backwards, after a drain (:mod:`switch.drain`): ``request_stop``
(SIGTERM) stops taking orders and waits, within ``[shutdown] grace_s``, for the orders under
way; then the HTTP server stops accepting (requests in flight finish), and leaving the actor
system stops its children in reverse start order, each finishing the message it is handling:
the sweeper, the orders (an order cut after its stop grace is at a point recovery handles, as
after a crash), the channels (provider calls on the wire finish), the pumps (their gateway
connections close) and the journal writer last, which commits what it accepted before it
exits. Then the store closes and ``run`` returns: the process exits 0.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio

from actors import ActorNotFound, ActorSystem, ChildSpec, Strategy, Supervisor, open_system
from channels.supervision import start_channels
from devices.station import station_spec
from ops.admin import AdminServer, AuditLog
from ops.metrics import METRICS
from switch.admin import AdminContext, reapply_channel_switches, switch_commands
from switch.api import Admission, AdmissionLimits, LagMeter, TokenSigner, mount_api
from switch.config import StationEntry, SwitchConfig
from switch.health import ReadinessProbe
from switch.http import BoundServer, create_app, serve_http
from switch.payments.callbacks import AppliedCallback, CallbackProcessor, routing_keys
from switch.payments.live_channels import LiveChannels
from switch.pricing import PromotionBook
from switch.routing import ChannelPolicy, Router, RoutingParams
from switch.stations import current_prices_by_station
from switch.stations.prices import apply_due_price_sets
from switch.stations.reference import seed_reference
from switch.store import Database, Store, migrate, open_store, server_urls
from switch.store.bus import OrderUpdates
from switch.store.journal import Journal, PreloadingJournal, StreamHead, journal_writer_spec

from .drain import DrainReport, StopPlan, wait_for_orders
from .orders import (
    OrderDeps,
    OrderDirectory,
    OrderService,
    OrderTimings,
    PaymentUpdate,
    Sweeper,
    orders_supervisor_spec,
    recover_orders,
)

__all__ = ["SwitchProcess", "SwitchRuntime"]

log = structlog.get_logger("switch")

START_BASE_S = 30.0
START_PER_PUMP_S = 0.25  # a pump's recovery at start: a few database and Modbus round trips
# Stations starting at once: their pumps' recoveries wait on the database and the gateways,
# so they overlap; the bound keeps the pool and the gateways from a stampede. On a quiet
# machine the phase is CPU-bound (about 0.5 ms a pump, 16 or 64 make no difference); under
# load the round trips are longer and more of them overlap.
START_CONCURRENCY = 64
# Stations whose prices are pushed at once: a station's push goes pump by pump, each a few
# round trips (database, two journal commits that group-commit with the other stations').
START_PUSH_CONCURRENCY = 128


@dataclass(frozen=True, slots=True)
class SwitchRuntime:
    """The running switch's parts, for tests and the admin socket."""

    config: SwitchConfig
    store: Store
    system: ActorSystem
    journal: Journal
    router: Router
    directory: OrderDirectory
    service: OrderService
    http_url: str


class SwitchProcess:
    """The switch. ``run`` serves until :meth:`request_stop` (or ``shutdown.set()``, which
    skips the drain); :meth:`drain`, :attr:`draining` and :meth:`in_flight_orders` are the
    process controls of the admin socket and the readiness check."""

    def __init__(self, config: SwitchConfig) -> None:
        self.config = config
        self.runtime: SwitchRuntime | None = None
        self.shutdown = trio.Event()  # set: stop now (the HTTP server first)
        self.drain_report: DrainReport | None = None
        self._directory: OrderDirectory | None = None
        self._service: OrderService | None = None
        self._draining = False
        self._stop_requested = trio.Event()
        self._hurry = trio.Event()
        self._stop_asked_at: float | None = None

    # -- process controls (admin socket, readiness, signals) -------------------------------

    @property
    def draining(self) -> bool:
        """Not taking new orders (an operator's drain, or a stop under way)."""
        return self._draining

    @property
    def stopping(self) -> bool:
        return self._stop_requested.is_set() or self.shutdown.is_set()

    def drain(self, on: bool = True) -> None:
        """Stop (``on``) or resume taking new orders; everything else carries on. Cheap and
        synchronous. A stop under way keeps draining: resuming is refused (logged)."""
        if not on and self.stopping:
            log.warning("switch.drain_kept", reason="the switch is stopping")
            return
        if on != self._draining:
            log.info("switch.drain", on=on, in_flight=self.in_flight_orders())
        self._draining = on
        if self._service is not None:
            self._service.draining = on

    def in_flight_orders(self) -> int:
        """Live orders not finished yet (moving, fuelling or waiting for a customer), counted
        from the order actors in memory: cheap, no database query."""
        return 0 if self._directory is None else self._directory.in_flight()

    def order_census(self) -> dict[str, int]:
        """Live orders by what they are doing: moving, fuelling, waiting, done."""
        return {} if self._directory is None else self._directory.census()

    def request_stop(self, *, immediate: bool = False) -> None:
        """Drain, wait for the orders under way (within the grace), then stop; with
        ``immediate`` (a second signal) the wait ends at once. Synchronous: a signal handler
        or an admin command calls it and ``run`` returns when the switch has stopped."""
        if not self._stop_requested.is_set():
            self._stop_asked_at = time.monotonic()
            self._stop_requested.set()
            self.drain(True)
            log.info("switch.stopping", grace_s=self.config.shutdown.grace_s)
        if immediate and not self._hurry.is_set():
            log.info("switch.stopping_now")
            self._hurry.set()

    # -- running ------------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        if config.http.port == 0:
            # Providers need the callback URL before the server binds: pick the port now.
            config = self.config = config.with_http(port=_free_port(config.http.host))
        phases = _Phases()
        with server_urls(config.home, config.database_url, config.redis_url) as urls:
            async with (
                open_store(urls.database_url, urls.redis_url, max_size=20) as store,
                store.db.dedicated(max_size=2) as journal_db,  # commits never queue
            ):
                phases.mark("store")
                await migrate(store.db)
                await seed_reference(store.db, config)
                phases.mark("schema_reference")
                async with open_system([journal_writer_spec(journal_db)], intensity=10) as system:
                    METRICS.watch_system(system)  # mailbox depths and restarts, at scrape time
                    journal = Journal(system, store.db)
                    await self._serve(
                        store, system, journal, urls.database_url, phases, task_status
                    )
                # Leaving the block stopped the actors in reverse start order, journal last.
        report = self.drain_report
        took = None if self._stop_asked_at is None else time.monotonic() - self._stop_asked_at
        log.info(
            "switch.stopped",
            stop_s=None if took is None else round(took, 3),
            **(report.to_log() if report is not None else {"drained": False}),
        )

    async def _serve(
        self,
        store: Store,
        system: ActorSystem,
        journal: Journal,
        database_url: str,
        phases: _Phases,
        task_status: trio.TaskStatus[dict[str, Any]],
    ) -> None:
        config = self.config
        stations = [station_spec(s.station_config(), journal) for s in config.stations]
        await system.start_child(
            ChildSpec(
                "stations",
                lambda: Supervisor(
                    stations,
                    strategy=Strategy.ONE_FOR_ONE,
                    intensity=50,
                    period=60.0,
                    start_concurrency=START_CONCURRENCY,
                ),
                shutdown=math.inf,
            ),
            # Every pump recovers in its init (journal, status, totals): the bound grows
            # with the chain instead of cutting a large start-up short.
            timeout=START_BASE_S + START_PER_PUMP_S * sum(s.pumps for s in config.stations),
        )
        phases.mark("stations")
        channel_configs = {entry.config.name: entry.config for entry in config.channels}
        live = LiveChannels()
        await start_channels(system, channel_configs.values(), make_channel=live)
        policies = [
            ChannelPolicy.from_mapping(e.config.name, e.config.provider, e.routing)
            for e in config.channels
        ]
        seed = config.routing.seed
        router = Router(
            system,
            policies,
            RoutingParams(exploration_permille=config.routing.exploration_permille),
            random.Random(seed) if seed else None,
        )
        timings = OrderTimings(
            customer_pay_timeout_s=config.orders.customer_pay_timeout_s,
            unknown_budget_s=config.orders.unknown_budget_s,
            sale_deadline_s=config.orders.sale_deadline_s,
        )
        updates = OrderUpdates(store.redis)
        # The orders left open by the last run: their actors, started by recover_orders,
        # read their journals in one query (every later load is the journal's own).
        open_orders = await journal.open_streams("order")
        deps = OrderDeps(
            db=store.db,
            journal=PreloadingJournal(journal, [head.stream_id for head in open_orders]),
            updates=updates,
            router=router,
            channels=channel_configs,
            promotions=PromotionBook.from_mappings(config.promotions),
            timings=timings,
        )
        await system.start_child(
            orders_supervisor_spec(passivate_after=config.orders.passivate_after_s)
        )
        plan = StopPlan(config.shutdown.grace_s)
        directory = self._directory = OrderDirectory(system, deps, stop_grace_s=plan.reserve_s)
        service = self._service = OrderService(system, deps, directory)
        service.draining = self._draining

        async def prices_due() -> None:
            for applied in await apply_due_price_sets(store.db):
                await service.push_prices(applied.station_id)

        # The URL is fixed already (``run`` picked the port): the context serves the admin
        # socket later, and first puts back the operators' channel switches, before any
        # order (recovered or new) routes a payment, while the database is still quiet.
        url = BoundServer(config.http.host, config.http.port).url
        admin = AdminContext.build(config, system, store.db, service, router, self, url)
        await reapply_channel_switches(admin)
        await system.start_child(ChildSpec("sweeper", lambda: Sweeper(directory, also=prices_due)))
        phases.mark("channels_orders")

        processor = CallbackProcessor(
            store,
            live.verifiers(channel_configs),
            routing_keys=routing_keys(channel_configs.values()),
            publish_updates=False,
        )

        async def wake_order(applied: AppliedCallback) -> None:
            order_id = applied.outcome.order_id
            if order_id is not None:
                key = applied.event.out_refund_no or applied.event.out_trade_no
                await directory.cast(order_id, PaymentUpdate(key))

        processor.add_hook(wake_order)
        readiness = ReadinessProbe(
            store.db, store.redis, system, list(channel_configs), lambda: self.draining
        )
        app = create_app(callbacks=processor, readiness=readiness)
        signer = TokenSigner(config.auth.secret)
        meter = LagMeter()
        limits = AdmissionLimits(
            max_open=config.orders.max_open,
            max_creating=config.orders.max_creating,
            max_lag_s=config.orders.max_lag_ms / 1000,
            max_store_s=config.orders.max_store_ms / 1000,
        )
        admission = Admission(
            limits, directory.open_orders, meter, store_latency=store.db.latency_s
        )
        mount_api(
            app,
            service=service,
            signer=signer,
            db=store.db,
            updates=updates,
            admission=admission,
        )
        async with trio.open_nursery() as nursery:
            # Recovered orders are actors that carry on by themselves: each one's first step
            # looks up what the providers and the pumps say before anything is re-sent
            # (invariant 7), whether the HTTP server is up or not. So the switch does not
            # wait for them to be started to take traffic: a callback or a request for one
            # not started yet starts it (the directory's ``ensure``), as for a passivated
            # order. A stop cuts the recovery short; the orders left wait for the next start.
            recovery_scope = trio.CancelScope()
            nursery.start_soon(
                _recover_in_background, store.db, journal, directory, open_orders, recovery_scope
            )
            nursery.start_soon(_cancel_on, self.shutdown, recovery_scope)
            # New orders are priced from the set in force, so the pumps show it before the
            # HTTP server takes any; the recovered orders were priced before the crash and
            # carry on meanwhile.
            await _push_prices(service, system, store.db, config.stations)
            phases.mark("prices")
            # The lag meter goes with the HTTP server: both end when the nursery does.
            lag_scope = trio.CancelScope()
            await nursery.start(_run_until, meter.run, lag_scope)
            nursery.start_soon(_cancel_on, self.shutdown, lag_scope)
            bound = await nursery.start(
                partial(serve_http, app, config.http.host, config.http.port, shutdown=self.shutdown)
            )
            # The admin socket stays up through a drain (operators watch it) and goes with
            # the HTTP server once the switch stops.
            admin_scope = trio.CancelScope()
            admin_server = AdminServer(
                config.admin_socket,
                switch_commands(admin),
                allowed_uids=config.admin.allowed_uids,
                audit=AuditLog(config.audit_log),
            )
            await nursery.start(_run_until, admin_server.run, admin_scope)
            nursery.start_soon(_cancel_on, self.shutdown, admin_scope)
            self.runtime = SwitchRuntime(
                config, store, system, journal, router, directory, service, bound.url
            )
            recovering = len(open_orders)
            phases.mark("http_admin")
            log.info(
                "switch.ready",
                http=bound.url,
                recovering=recovering,
                since_exec_s=phases.since_exec_s(),
                phases_s=phases.took,
                phases_cpu_s=phases.cpu,
            )
            task_status.started(
                {
                    "http": bound.url,
                    "docs": f"{bound.url}/docs",
                    "admin_socket": str(config.admin_socket),
                    "database": database_url.rsplit("@", 1)[-1],
                    "stations": len(config.stations),
                    "channels": sorted(channel_configs),
                    "recovered_orders": recovering,
                }
            )
            await _first_of(self._stop_requested, self.shutdown)
            if not self.shutdown.is_set():
                # Callbacks and pumps keep working meanwhile: the HTTP server is still up.
                asked = self._stop_asked_at or time.monotonic()
                deadline = trio.current_time() + plan.wait_s - (time.monotonic() - asked)
                self.drain_report = await wait_for_orders(
                    directory, deadline=deadline, hurry=self._hurry
                )
                self.shutdown.set()  # the HTTP server stops accepting; the nursery then ends


class _Phases:
    """How long each step of the start took (seconds), and how much of it was this
    process's CPU, for the ready line: a slow start says where its time went, and whether
    it waited (on the database, the pumps) or computed."""

    def __init__(self) -> None:
        self.took: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._last = time.monotonic()
        self._last_cpu = time.process_time()

    @staticmethod
    def since_exec_s() -> float | None:
        """Seconds since this process started (Linux), imports and all: with a SIGKILL's
        restart the interpreter's own start is part of the time the switch is away."""
        try:
            started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
            uptime = float(Path("/proc/uptime").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return round(uptime - started / os.sysconf("SC_CLK_TCK"), 3)

    def mark(self, name: str) -> None:
        now, cpu = time.monotonic(), time.process_time()
        self.took[name] = round(now - self._last, 3)
        self.cpu[name] = round(cpu - self._last_cpu, 3)
        self._last, self._last_cpu = now, cpu


async def _recover_in_background(
    db: Database,
    journal: Journal,
    directory: OrderDirectory,
    heads: Sequence[StreamHead],
    scope: trio.CancelScope,
) -> None:
    """:func:`recover_orders` while the switch serves; a failure is logged, not fatal: the
    orders it did not start are started by the first message for them, or the next start."""
    started = time.monotonic()
    with scope:
        try:
            count = await recover_orders(db, journal, directory, heads=heads)
        except Exception as exc:
            log.exception("orders.recovery_failed", error=str(exc))
            return
        log.info("orders.recovery_done", count=count, took_s=round(time.monotonic() - started, 3))


async def _push_prices(
    service: OrderService, system: ActorSystem, db: Database, stations: Sequence[StationEntry]
) -> None:
    """The set in force to every station whose pumps do not all show it already,
    ``START_PUSH_CONCURRENCY`` stations at a time.

    A push is a few round trips per pump (database, two journal commits, two gateway
    requests); after a restart nearly every pump read the set in force from its own
    registers in its ``init`` a moment ago, and pushing it again would change nothing. A
    pump whose registers were not read (it did not answer), that has a change pending or
    shows another set gets its station's push, as before.
    """
    limiter = trio.CapacityLimiter(START_PUSH_CONCURRENCY)
    prices = await current_prices_by_station(db, [s.id for s in stations])
    due = [s for s in stations if not _prices_shown(system, prices.get(s.id, {}), s)]

    async def push(station: StationEntry) -> None:
        async with limiter:
            await service.push_prices(station.id)

    async with trio.open_nursery() as nursery:
        for station in due:
            nursery.start_soon(push, station)
    log.info("prices.pushed", stations=len(due), already_shown=len(stations) - len(due))


def _prices_shown(
    system: ActorSystem, prices: Mapping[str, tuple[int, int]], station: StationEntry
) -> bool:
    in_force = {set_id for set_id, _ in prices.values()}
    if len(in_force) != 1:
        return not in_force  # no set in force: a push sends nothing either
    (set_id,) = in_force
    for unit in station.station_config().units:
        try:
            state = system.snapshot(f"stations/{station.id}/p{unit:02d}").state
        except ActorNotFound:
            return False
        shown = state.get("state") not in (None, "OFFLINE") and state.get("pending_prices") is None
        if not shown or state.get("price_set_id") != set_id:
            return False
    return True


async def _run_until(
    run: Callable[..., Awaitable[Any]],
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``nursery.start(run)`` inside ``scope``, so that another task can end it."""
    with scope:
        await run(task_status=task_status)


async def _cancel_on(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _first_of(*events: trio.Event) -> None:
    async with trio.open_nursery() as nursery:
        for event in events:

            async def wait(event: trio.Event = event) -> None:
                await event.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
