"""The provider simulator process: keys, the shared context, one HTTP server per provider.

:class:`ProviderSimService` makes sure every provider's and merchant's keys exist under
``$FUELSWITCH_HOME/keys`` (generated on the first start, reused afterwards, so a switch
configured from them keeps working across restarts), builds the shared
:class:`~channels.sim.base.SimContext` and the provider simulators, and serves each provider's
app (wrapped in the fault middleware) and the control API with ``hypercorn.trio.serve``, each on
a port of its own. Once all of them listen it reports the ready document: the URLs, the keys
root and the merchants.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.types import ASGIApp

from channels.model import Provider

from .base import ProviderSim, SimContext, SimMerchant, default_merchants
from .control import control_app
from .faults import FaultMiddleware

__all__ = ["ProviderServiceConfig", "ProviderSimService", "build_simulators", "ensure_all_keys"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProviderServiceConfig:
    home: Path  # $FUELSWITCH_HOME; the keys live in home/keys
    host: str = "127.0.0.1"
    ports: Mapping[Provider, int] = field(default_factory=dict)  # missing or 0: a free port
    control_port: int = 0
    clock_scale: float = 1.0
    seed: int = 0
    merchants: int = 1  # per provider

    def __post_init__(self) -> None:
        named = [(p.value, port) for p, port in self.ports.items()]
        for name, port in [*named, ("control", self.control_port)]:
            if not 0 <= port <= 65535:
                raise ValueError(f"the {name} port must be within 0..65535")
        if not math.isfinite(self.clock_scale) or self.clock_scale <= 0:
            raise ValueError("the clock scale must be positive")
        if not 1 <= self.merchants <= 1000:
            raise ValueError("between 1 and 1000 merchants per provider")

    @property
    def keys_root(self) -> Path:
        return self.home / "keys"


def ensure_all_keys(
    keys_root: Path,
    classes: Sequence[type[ProviderSim]],
    merchants: Mapping[Provider, list[SimMerchant]],
) -> None:
    """Generate what is missing (slow the first time: RSA keys); keep what exists."""
    keys_root.mkdir(parents=True, exist_ok=True)
    for cls in classes:
        cls.ensure_keys(keys_root, merchants.get(cls.provider, []))


def build_simulators(
    config: ProviderServiceConfig, classes: Sequence[type[ProviderSim]]
) -> tuple[SimContext, dict[Provider, ProviderSim]]:
    ctx = SimContext.create(
        config.keys_root,
        scale=config.clock_scale,
        seed=config.seed,
        merchants=default_merchants(config.merchants),
    )
    return ctx, {cls.provider: cls(ctx) for cls in classes}


def _hypercorn_config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 1.0
    return config


class ProviderSimService:
    def __init__(
        self,
        config: ProviderServiceConfig,
        classes: Sequence[type[ProviderSim]] | None = None,
    ) -> None:
        if classes is None:
            from .registry import default_providers

            classes = default_providers()
        self.config = config
        self.classes = list(classes)
        self.ctx: SimContext | None = None
        self.sims: dict[Provider, ProviderSim] = {}

    async def run(self, *, task_status: trio.TaskStatus[dict[str, Any]]) -> None:
        """Serve until cancelled; reports started with the ready document."""
        c = self.config
        merchants = default_merchants(c.merchants)
        await trio.to_thread.run_sync(ensure_all_keys, c.keys_root, self.classes, merchants)
        ctx, sims = build_simulators(c, self.classes)
        self.ctx, self.sims = ctx, sims
        async with trio.open_nursery() as nursery:
            await nursery.start(ctx.callbacks.run)
            urls: dict[str, str] = {}
            for provider, sim in sims.items():
                app = FaultMiddleware(sim.app(), provider, ctx.faults, sim.error_body)
                url = await self._serve(nursery, app, c.ports.get(provider, 0))
                ctx.base_urls[provider] = urls[provider.value] = url
            urls["control"] = await self._serve(nursery, control_app(ctx, sims), c.control_port)
            log.info("sim.providers_listening", **urls)
            task_status.started(
                {
                    **urls,
                    "keys": str(c.keys_root),
                    "merchants": {
                        p.value: [{"merchant_id": m.merchant_id, "app_id": m.app_id} for m in ms]
                        for p, ms in ctx.merchants.items()
                        if p in sims
                    },
                    "clock_scale": c.clock_scale,
                    "seed": c.seed,
                    "pid": os.getpid(),
                }
            )

    async def _serve(self, nursery: trio.Nursery, app: ASGIApp, port: int) -> str:
        config = _hypercorn_config(self.config.host, port)
        binds: list[str] = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
        return binds[0]
