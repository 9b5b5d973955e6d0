"""The base every provider simulator builds on, and the context they share.

A provider simulator (``channels/sim/wechatpay.py``, ``alipay.py``, ``unionpay.py``) subclasses
:class:`ProviderSim`: it serves the provider's endpoints as a Starlette app, plays the customer
when the control API says so, signs with the provider's keys and fires callbacks through the
shared :class:`~channels.sim.callbacks.CallbackEngine`. Everything they share — the simulated
clock, the ledger, the callback engine, the fault settings, the merchants — lives in one
:class:`SimContext`, so the control API sees what every simulator does.

``SimContext.keys_dir`` is the keys *root* (``$FUELSWITCH_HOME/keys``); each provider's
``credentials`` module lays out ``<root>/<provider>/<merchant_id>/`` (the switch's material) and
``<root>/<provider>/_provider/`` (the provider's private keys, read only by the simulator).
"""

from __future__ import annotations

import abc
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import structlog
import trio
from starlette.applications import Starlette

from channels.model import Provider

from .callbacks import CallbackEngine
from .clock import SimClock
from .faults import Faults
from .ledger import Ledger

__all__ = [
    "CUSTOMER_ACTIONS",
    "CustomerAction",
    "CustomerError",
    "ProviderSim",
    "SimContext",
    "SimMerchant",
    "default_merchants",
    "open_sim_context",
]

log = structlog.get_logger(__name__)

CustomerAction = Literal["pay", "decline", "abandon"]
CUSTOMER_ACTIONS: Final[tuple[CustomerAction, ...]] = ("pay", "decline", "abandon")


@dataclass(frozen=True, slots=True)
class SimMerchant:
    merchant_id: str  # WeChat mchid, Alipay seller_id (2088...), UnionPay merId
    app_id: str  # WeChat appid, Alipay app_id; UnionPay ""


# The first merchant of each provider has fixed ids (the ones in the providers' documentation
# style), so configurations and fixtures can name them; more are derived by counting up.
_FIRST: Final[Mapping[Provider, tuple[int, str]]] = {
    Provider.WECHATPAY: (1900000109, "wxd678efh567hg6787"),
    Provider.ALIPAY: (2088123456789012, "2021000000000001"),
    Provider.UNIONPAY: (777290058110048, ""),
}


def default_merchants(count: int = 1) -> dict[Provider, list[SimMerchant]]:
    """``count`` merchants per provider: the fixed first one, then derived ids."""
    if not 1 <= count <= 1000:
        raise ValueError("between 1 and 1000 merchants per provider")
    out: dict[Provider, list[SimMerchant]] = {}
    for provider, (first_id, first_app) in _FIRST.items():
        merchants = []
        for i in range(count):
            if provider is Provider.WECHATPAY:
                app_id = first_app if i == 0 else f"wxd678efh567h{6787 + i:05d}"
            elif provider is Provider.ALIPAY:
                app_id = str(2021000000000001 + i)
            else:
                app_id = ""
            merchants.append(SimMerchant(str(first_id + i), app_id))
        out[provider] = merchants
    return out


@dataclass(slots=True)
class SimContext:
    clock: SimClock
    ledger: Ledger
    callbacks: CallbackEngine
    faults: Faults
    keys_dir: Path  # the keys root, $FUELSWITCH_HOME/keys
    merchants: dict[Provider, list[SimMerchant]]
    rng: random.Random  # ids, nonces and other non-fault choices (seeded)
    base_urls: dict[Provider, str] = field(default_factory=dict)  # filled once listening

    @classmethod
    def create(
        cls,
        keys_dir: Path,
        *,
        scale: float = 1.0,
        seed: int = 0,
        merchants: dict[Provider, list[SimMerchant]] | None = None,
    ) -> SimContext:
        clock = SimClock(scale)
        faults = Faults(seed)
        return cls(
            clock=clock,
            ledger=Ledger(),
            callbacks=CallbackEngine(clock, faults),
            faults=faults,
            keys_dir=keys_dir,
            merchants=default_merchants() if merchants is None else merchants,
            rng=random.Random(seed),
        )

    def merchant(self, provider: Provider, merchant_id: str) -> SimMerchant | None:
        found = (m for m in self.merchants.get(provider, ()) if m.merchant_id == merchant_id)
        return next(found, None)

    def merchant_by_app(self, provider: Provider, app_id: str) -> SimMerchant | None:
        return next((m for m in self.merchants.get(provider, ()) if m.app_id == app_id), None)


@asynccontextmanager
async def open_sim_context(
    keys_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    merchants: dict[Provider, list[SimMerchant]] | None = None,
) -> AsyncIterator[SimContext]:
    """A context whose callback engine runs for the duration of the block (for tests and
    embedding a simulator in another trio program)."""
    ctx = SimContext.create(keys_dir, scale=scale, seed=seed, merchants=merchants)
    async with trio.open_nursery() as nursery:
        await nursery.start(ctx.callbacks.run)
        yield ctx
        nursery.cancel_scope.cancel()


class CustomerError(Exception):
    """The customer cannot do that: ``status`` and ``code`` are what the control API answers
    (404 not_found for an unknown trade, 409 wrong_state when it is not awaiting the customer)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ProviderSim(abc.ABC):
    """One simulated provider. Subclasses set ``provider`` and implement the abstract methods."""

    provider: ClassVar[Provider]

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx

    @property
    def merchants(self) -> list[SimMerchant]:
        return self.ctx.merchants.get(self.provider, [])

    @property
    def provider_keys_dir(self) -> Path:
        """``<keys root>/<provider>``."""
        return self.ctx.keys_dir / self.provider.value

    @property
    def base_url(self) -> str:
        """Where this simulator is reachable (empty until it listens)."""
        return self.ctx.base_urls.get(self.provider, "")

    @abc.abstractmethod
    def app(self) -> Starlette:
        """The provider's endpoints (the framework adds the fault middleware)."""

    @abc.abstractmethod
    async def customer(self, merchant_id: str, key: str, action: str) -> dict[str, Any]:
        """Act as the customer on the trade ``key``: "pay" (or confirm a pre-authorization),
        "decline", "abandon". Pay and decline fire the provider's callbacks. Raises
        CustomerError when the trade is unknown or not waiting for the customer."""

    @abc.abstractmethod
    def rotate_keys(self) -> dict[str, Any]:
        """Start signing with new platform keys (the provider's rotation); what changed."""

    @abc.abstractmethod
    def error_body(self, status: int) -> tuple[str, bytes]:
        """(content type, body) of a server error in the provider's own format."""

    @classmethod
    @abc.abstractmethod
    def ensure_keys(cls, keys_root: Path, merchants: list[SimMerchant]) -> None:
        """Generate the provider's and the merchants' keys unless they exist (idempotent:
        existing keys are kept, so a switch configured from them keeps working)."""

    @abc.abstractmethod
    def public_material(self) -> dict[str, Any]:
        """JSON-able: per merchant, its keys_dir and the ids a switch configuration needs."""

    def after_hold(self, merchant_id: str, key: str) -> None:
        """Call when a hold awaits the customer: with auto-pay on, the customer pays it after
        ``auto_pay_delay_ms`` (load tests run without anyone at the control API)."""
        faults = self.ctx.faults.get(self.provider)
        if faults.auto_pay:
            self.ctx.callbacks.spawn(self._auto_pay, merchant_id, key, faults.auto_pay_delay_ms)

    async def _auto_pay(self, merchant_id: str, key: str, delay_ms: int) -> None:
        if delay_ms:
            await trio.sleep(delay_ms / 1000)
        try:
            await self.customer(merchant_id, key, "pay")
        except CustomerError as exc:  # closed or paid meanwhile: nothing to do
            log.info("sim.auto_pay_skipped", provider=self.provider.value, reason=exc.code)
