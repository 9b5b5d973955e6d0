"""The ChannelActor driving each real adapter against the real provider simulator process, over
real HTTP: technical health falls under injected 5xx and timeouts and comes back through probes,
declines move the approval rate and never health, and certificates are refreshed on schedule
(and a provider's key rotation is picked up by that schedule)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from channels.actor import ChannelControl
from channels.actor_messages import ChannelStatistics, GetStatistics, Hold, Query
from channels.config import ChannelConfig
from channels.health import ChannelHealth, HealthLevel, HealthPolicy
from channels.model import ChannelResult, HoldRequest, Outcome, PaymentState, Provider
from channels.supervision import start_channels
from channels.transport import HttpLimits
from tests.channels.provider_sim import SAFE, ProviderSimProcess

PROVIDERS = list(Provider)
_serial = itertools.count(1)

# A payer id each provider accepts (WeChat openid, Alipay user id; UnionPay needs none).
PAYERS = {
    Provider.WECHATPAY: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
    Provider.ALIPAY: "2088000000000001",
    Provider.UNIONPAY: "",
}


def new_key(provider: Provider, tag: str) -> str:
    """Letters and digits only, 6-32 long: every provider's out_trade_no/orderId rules."""
    return f"FS{provider.value[:2].upper()}{tag}{next(_serial):08d}"


def channel_config(sim: ProviderSimProcess, provider: Provider, **changes: Any) -> ChannelConfig:
    merchant = sim.ready["merchants"][provider.value][0]
    fields: dict[str, Any] = {
        "name": f"{provider.value}-sim",
        "provider": provider,
        "base_url": sim.url(provider.value),
        "merchant_id": merchant["merchant_id"],
        "app_id": merchant["app_id"],
        "keys_dir": Path(sim.ready["keys"]) / provider.value / merchant["merchant_id"],
        "notify_url": "http://127.0.0.1:9/callbacks/" + provider.value,  # nobody listens
        "limits": HttpLimits(connect_timeout_s=2.0, read_timeout_s=2.0),
    }
    fields.update(changes)
    return ChannelConfig(**fields)


class Driven:
    """A running ChannelActor on a real adapter, and the calls a test makes to it."""

    def __init__(self, system: actors.ActorSystem, address: str, provider: Provider) -> None:
        self.system = system
        self.address = address
        self.provider = provider

    async def call(self, msg: Any) -> Any:
        return await self.system.call(self.address, msg, timeout=SAFE)

    async def stats(self) -> ChannelStatistics:
        stats: ChannelStatistics = await self.call(GetStatistics())
        return stats

    async def until(self, predicate: Callable[[ChannelStatistics], bool]) -> ChannelStatistics:
        """Poll the statistics until ``predicate`` holds (bounded by SAFE: a bound, not a
        measurement)."""
        with trio.fail_after(SAFE):
            while True:
                stats = await self.stats()
                if predicate(stats):
                    return stats
                await trio.sleep(0.02)

    async def hold(self, key: str, amount_fen: int = 10000) -> ChannelResult:
        request = HoldRequest(
            key,
            amount_fen,
            "92# 100.00",
            PAYERS[self.provider],
            "http://127.0.0.1:9/callbacks/" + self.provider.value,
            datetime.now(UTC),
        )
        result: ChannelResult = await self.call(Hold(request))
        return result

    async def query(self, key: str) -> ChannelResult:
        # A made-up provider reference lets every adapter ask (UnionPay needs one for an order
        # it never saw); the order does not exist, which is a perfectly good answer.
        result: ChannelResult = await self.call(Query(key, "000000000000000000000"))
        return result


@asynccontextmanager
async def driven(
    sim: ProviderSimProcess,
    provider: Provider,
    *,
    control: ChannelControl | None = None,
    **changes: Any,
) -> AsyncIterator[Driven]:
    cfg = channel_config(sim, provider, **changes)
    controls = {cfg.name: control} if control is not None else {}
    async with actors.open_system() as system:
        await start_channels(system, [cfg], controls=controls)
        channel = Driven(system, f"channels/{cfg.name}", provider)
        # The first refresh runs as the actor starts; wait for it so every test's traffic is
        # verified against the provider's current material.
        await channel.until(lambda s: s.certificates.refreshes >= 1)
        yield channel


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)
async def test_health_drops_under_5xx_and_timeouts_and_recovers_through_probes(
    provider_sim: ProviderSimProcess, provider: Provider
) -> None:
    fast_probes = ChannelControl(health=ChannelHealth(HealthPolicy(probe_interval_s=0.2)))
    limits = HttpLimits(connect_timeout_s=2.0, read_timeout_s=0.5)
    sim = provider_sim.control
    async with driven(provider_sim, provider, control=fast_probes, limits=limits) as channel:
        assert (await channel.query(new_key(provider, "OK"))).outcome is Outcome.APPROVED
        try:
            await sim.aset_faults(provider.value, error_rate=1.0)
            for _ in range(44):
                result = await channel.query(new_key(provider, "Q"))
                assert result.outcome is Outcome.UNKNOWN  # a 5xx: not known either way
            stats = await channel.stats()
            assert stats.health.level is HealthLevel.FLUCTUATING
            assert stats.eligible
            # A money-moving request under 5xx is unknown too, and the 45th failure in a row.
            held = await channel.hold(new_key(provider, "H"))
            assert held.outcome is Outcome.UNKNOWN
            stats = await channel.stats()
            assert stats.health.level is HealthLevel.DOWN
            assert not stats.eligible
            assert stats.health.consecutive_failures >= 45
            await sim.aset_faults(provider.value, timeout_rate=1.0, timeout_hold_s=2.0)
            timed_out = await channel.query(new_key(provider, "T"))
            assert (timed_out.outcome, timed_out.reason) == (Outcome.UNKNOWN, "timeout")
            stats = await channel.stats()
            assert stats.health.last_failure_reason == "timeout"
            assert stats.health.approvals == stats.health.declines == 0
        finally:
            await sim.aclear_faults()
        # Nothing routes to it now; the actor's own probes notice the provider is back.
        back = await channel.until(lambda s: s.eligible)
        assert back.counts["probe"].get("approved", 0) >= 1
        assert back.health.level is HealthLevel.FLUCTUATING  # gradually: not HEALTHY yet
        for _ in range(15):
            assert (await channel.query(new_key(provider, "R"))).outcome is Outcome.APPROVED
        assert (await channel.stats()).health.level is HealthLevel.HEALTHY


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)
async def test_declines_move_approval_and_never_health(
    provider_sim: ProviderSimProcess, provider: Provider
) -> None:
    async with driven(provider_sim, provider) as channel:
        for _ in range(3):
            key = new_key(provider, "D")
            assert (await channel.hold(key, 10000)).outcome is Outcome.PENDING
            # The same key with other parameters: the provider refuses it, on purpose.
            refused = await channel.hold(key, 20000)
            assert refused.outcome is Outcome.DECLINED
        stats = await channel.stats()
        assert stats.health.declines == 3
        assert sum(stats.health.decline_reasons.values()) == 3
        assert stats.health.approval_rate < 0.9  # below the prior it started from
        assert stats.health.technical_failures == 0
        assert stats.health.level is HealthLevel.HEALTHY
        assert stats.health.score == 1.0
        assert stats.counts["hold"] == {"pending": 3, "declined": 3}


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)
async def test_a_customer_decline_is_seen_by_query_and_is_no_technical_failure(
    provider_sim: ProviderSimProcess, provider: Provider
) -> None:
    async with driven(provider_sim, provider) as channel:
        key = new_key(provider, "C")
        held = await channel.hold(key)
        assert held.outcome is Outcome.PENDING
        await provider_sim.control.acustomer(provider.value, key, "decline")
        result: ChannelResult = await channel.call(Query(key, held.provider_ref))
        assert result.outcome is Outcome.APPROVED
        assert result.payment is not None
        assert result.payment.state in (PaymentState.FAILED, PaymentState.CLOSED)
        stats = await channel.stats()
        assert stats.health.technical_failures == 0
        assert stats.counts["query"] == {"approved": 1}


# Last in the module: rotating a provider's keys changes the simulator for the tests after it.
@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.value)
async def test_certificates_are_refreshed_on_schedule_and_pick_up_a_rotation(
    provider_sim: ProviderSimProcess, provider: Provider
) -> None:
    async with driven(provider_sim, provider, certificate_refresh_s=0.5) as channel:
        stats = await channel.until(lambda s: s.certificates.refreshes >= 3)
        before = stats.certificates
        assert before.failures == 0
        assert before.count is not None and before.count >= 1
        await provider_sim.control.arotate_keys(provider.value)
        after = (
            await channel.until(lambda s: s.certificates.refreshes >= before.refreshes + 2)
        ).certificates
        assert after.failures == 0
        assert after.count is not None
        if provider is Provider.WECHATPAY:
            assert after.count == before.count + 1  # the new platform certificate joined
        # Answers signed with the rotated material verify again.
        assert (await channel.query(new_key(provider, "K"))).outcome is Outcome.APPROVED
        final = await channel.stats()
        assert final.counts["certificates"] == {"approved": final.certificates.refreshes}
