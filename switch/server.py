"""The switch process: servers, store, actor tree, HTTP, recovery, in that order.

``fuelswitch serve --config switch.toml`` runs :class:`SwitchProcess` until SIGTERM/SIGINT.
Start-up order matters for crash safety: the journal writer and the pumps come up (each pump
runs its restart table in ``init``) before any order is re-driven, and the channels before the
orders that will query them; the HTTP server opens last, so a provider's callback or a
customer never reaches a switch that cannot act on it yet. The ready line (one JSON object on
stdout) names the HTTP URL and the database, for the demo, tests and operators.
"""

from __future__ import annotations

import math
import random
import socket
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog
import trio

from actors import ActorSystem, ChildSpec, Strategy, Supervisor, open_system
from channels.supervision import start_channels
from devices.station import station_spec
from switch.api import TokenSigner, mount_api
from switch.config import SwitchConfig
from switch.http import create_app, serve_http
from switch.payments.callbacks import AppliedCallback, CallbackProcessor, routing_keys
from switch.payments.live_channels import LiveChannels
from switch.pricing import PromotionBook
from switch.routing import ChannelPolicy, Router, RoutingParams
from switch.stations.prices import apply_due_price_sets
from switch.stations.reference import seed_reference
from switch.store import Store, migrate, open_store, server_urls
from switch.store.bus import OrderUpdates
from switch.store.journal import Journal, journal_writer_spec

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
    def __init__(self, config: SwitchConfig) -> None:
        self.config = config
        self.runtime: SwitchRuntime | None = None
        self.shutdown = trio.Event()

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        if config.http.port == 0:
            # Providers need the callback URL before the server binds: pick the port now.
            config = self.config = config.with_http(port=_free_port(config.http.host))
        with server_urls(config.home, config.database_url, config.redis_url) as urls:
            async with open_store(urls.database_url, urls.redis_url, max_size=20) as store:
                await migrate(store.db)
                await seed_reference(store.db, config)
                async with open_system([journal_writer_spec(store.db)], intensity=10) as system:
                    journal = Journal(system, store.db)
                    await self._serve(store, system, journal, urls.database_url, task_status)

    async def _serve(
        self,
        store: Store,
        system: ActorSystem,
        journal: Journal,
        database_url: str,
        task_status: trio.TaskStatus[dict[str, Any]],
    ) -> None:
        config = self.config
        stations = [station_spec(s.station_config(), journal) for s in config.stations]
        await system.start_child(
            ChildSpec(
                "stations",
                lambda: Supervisor(
                    stations, strategy=Strategy.ONE_FOR_ONE, intensity=50, period=60.0
                ),
                shutdown=math.inf,
            )
        )
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
        deps = OrderDeps(
            db=store.db,
            journal=journal,
            updates=updates,
            router=router,
            channels=channel_configs,
            promotions=PromotionBook.from_mappings(config.promotions),
            timings=timings,
        )
        await system.start_child(
            orders_supervisor_spec(passivate_after=config.orders.passivate_after_s)
        )
        directory = OrderDirectory(system, deps)
        service = OrderService(system, deps, directory)

        async def prices_due() -> None:
            for applied in await apply_due_price_sets(store.db):
                await service.push_prices(applied.station_id)

        await system.start_child(ChildSpec("sweeper", lambda: Sweeper(directory, also=prices_due)))
        for station in config.stations:
            await service.push_prices(station.id)
        recovered = await recover_orders(store.db, journal, directory)

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
        app = create_app(callbacks=processor)
        signer = TokenSigner(config.auth.secret)
        mount_api(app, service=service, signer=signer, db=store.db, updates=updates)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(
                partial(serve_http, app, config.http.host, config.http.port, shutdown=self.shutdown)
            )
            self.runtime = SwitchRuntime(
                config, store, system, journal, router, directory, service, bound.url
            )
            log.info("switch.ready", http=bound.url, recovered=recovered)
            task_status.started(
                {
                    "http": bound.url,
                    "docs": f"{bound.url}/docs",
                    "database": database_url.rsplit("@", 1)[-1],
                    "stations": len(config.stations),
                    "channels": sorted(channel_configs),
                    "recovered_orders": recovered,
                }
            )
            await self.shutdown.wait()


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
