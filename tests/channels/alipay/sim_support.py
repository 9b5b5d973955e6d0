"""The Alipay simulator inside the test's own trio run, on a real socket, for channel tests that
need to reach into the simulator (its clock, ledger, faults) between HTTP exchanges.

The full process (``fuelswitch sim providers``) is what test_interop.py uses; this in-process
variant serves the same app, wrapped in the same fault middleware, with hypercorn on loopback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from channels.alipay import AlipayChannel, merchant_dir
from channels.config import ChannelConfig
from channels.model import Provider
from channels.sim import FaultMiddleware, SimContext, default_merchants, open_sim_context
from channels.sim.alipay import AlipaySim
from channels.transport import HttpLimits
from tests.channels.callback_receiver import Receiver

ALIPAY = Provider.ALIPAY
SAFE = 10.0  # a bound for what must happen, never a measurement


@dataclass(frozen=True, slots=True)
class SimWorld:
    ctx: SimContext
    sim: AlipaySim
    url: str
    receiver: Receiver
    keys_root: Path

    @property
    def seller_id(self) -> str:
        return self.sim.merchants[0].merchant_id

    @property
    def app_id(self) -> str:
        return self.sim.merchants[0].app_id

    def config(self, limits: HttpLimits | None = None, name: str = "alipay-test") -> ChannelConfig:
        return ChannelConfig(
            name=name,
            provider=ALIPAY,
            base_url=self.url,
            merchant_id=self.seller_id,
            app_id=self.app_id,
            keys_dir=merchant_dir(self.keys_root, self.seller_id),
            notify_url=self.receiver.url("/callbacks/alipay"),
            limits=limits or HttpLimits(),
        )

    def channel(self, limits: HttpLimits | None = None) -> AlipayChannel:
        return AlipayChannel.from_config(self.config(limits))


def generate_keys(keys_root: Path) -> None:
    AlipaySim.ensure_keys(keys_root, default_merchants(1)[ALIPAY])


@asynccontextmanager
async def alipay_world(keys_root: Path, receiver: Receiver) -> AsyncIterator[SimWorld]:
    """The simulator (keys already generated under ``keys_root``) and a notify receiver."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 0.5
    async with open_sim_context(keys_root, merchants=default_merchants(1)) as ctx:
        sim = AlipaySim(ctx)
        app = FaultMiddleware(sim.app(), ALIPAY, ctx.faults, sim.error_body)
        async with trio.open_nursery() as nursery:
            await nursery.start(receiver.run)
            binds: list[str] = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
            ctx.base_urls[ALIPAY] = binds[0]
            yield SimWorld(ctx, sim, binds[0], receiver, keys_root)
            nursery.cancel_scope.cancel()
