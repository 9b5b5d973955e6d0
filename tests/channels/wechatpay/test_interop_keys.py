"""Platform keys against the real simulator process: certificate refresh and rotation, the
WeChat Pay public key, and a merchant migrating between the two.

A module of its own (and so a simulator process of its own): the rotation test moves the
simulated clock days ahead."""

from __future__ import annotations

from collections import Counter

import pytest
import trio

from channels.model import CallbackKind, Outcome, PaymentState
from channels.sim.wechatpay_keys import OVERLAP_S, ROTATION_LEAD_S
from channels.wechatpay import PUBLIC_KEY_PREFIX
from tests.channels.callback_receiver import Receiver
from tests.channels.provider_sim import ProviderSimProcess
from tests.channels.wechatpay.interop_support import (
    channel,
    config,
    hold_request,
    merchant,
    unique_key,
    verified,
)

CERTIFICATE, MIXED, PUBLIC_KEY = 0, 1, 2  # the simulator's merchants, by verify mode
NOTIFY = "http://127.0.0.1:9/notify"  # these tests read no callbacks of the holds they make


@pytest.fixture(scope="module")
def provider_sim_args() -> tuple[str, ...]:
    return ("--merchants", "3")


async def _queries(
    sim: ProviderSimProcess, index: int, count: int
) -> tuple[list[Outcome], Counter[str]]:
    ch, transport = channel(config(sim, index))
    try:
        key = unique_key("FS")
        await ch.hold(hold_request(key, 100, NOTIFY))
        outcomes = [(await ch.query(key)).outcome for _ in range(count)]
        return outcomes, Counter(transport.serials)
    finally:
        await ch.aclose()


async def test_material_names_the_modes(provider_sim: ProviderSimProcess) -> None:
    material = (await provider_sim.control.amaterial())["wechatpay"]["merchants"]
    assert [m["verify_mode"] for m in material] == ["certificate", "mixed", "public_key"]
    assert all(m["public_key_id"].startswith(PUBLIC_KEY_PREFIX) for m in material)
    assert [m["merchant_id"] for m in material] == [
        merchant(provider_sim, i)["merchant_id"] for i in range(3)
    ]


async def test_public_key_merchant(provider_sim: ProviderSimProcess) -> None:
    outcomes, serials = await _queries(provider_sim, PUBLIC_KEY, 5)
    assert set(outcomes) == {Outcome.APPROVED}
    assert len(serials) == 1 and next(iter(serials)).startswith(PUBLIC_KEY_PREFIX)


async def test_migrating_merchant_sees_both_kinds(provider_sim: ProviderSimProcess) -> None:
    outcomes, serials = await _queries(provider_sim, MIXED, 30)
    assert set(outcomes) == {Outcome.APPROVED}
    kinds = {s.startswith(PUBLIC_KEY_PREFIX) for s in serials}
    assert kinds == {True, False}


async def test_callbacks_of_a_public_key_merchant(
    provider_sim: ProviderSimProcess, nursery: trio.Nursery
) -> None:
    receiver = Receiver()
    await nursery.start(receiver.run)
    ch, _ = channel(config(provider_sim, PUBLIC_KEY, notify_url=receiver.url()))
    try:
        key = unique_key("FS")
        await ch.hold(hold_request(key, 321, receiver.url()))
        await provider_sim.control.acustomer(
            "wechatpay", key, "pay", merchant(provider_sim, PUBLIC_KEY)["merchant_id"]
        )
        (received,) = await receiver.wait_for(1)
        assert received.headers["wechatpay-serial"].startswith(PUBLIC_KEY_PREFIX)
        event = verified(ch, received)
        assert event is not None and (event.kind, event.amount_fen) == (CallbackKind.PAYMENT, 321)
    finally:
        await ch.aclose()


async def test_certificate_rotation(provider_sim: ProviderSimProcess) -> None:
    """Published first, signing a day later, both at random for the overlap, then only the new
    one. A channel that refreshes on schedule never sees a serial it does not know; one that
    never refreshes starts refusing answers once the new certificate signs."""
    control = provider_sim.control
    refreshed, refreshed_t = channel(config(provider_sim, CERTIFICATE))
    stale, _ = channel(config(provider_sim, CERTIFICATE))
    try:
        (old,) = refreshed.platform_keys.certs
        assert await refreshed.refresh_certificates() == len(refreshed.platform_keys)
        rotated = await control.arotate_keys("wechatpay")
        new = rotated["serial"]
        assert rotated["retiring"] == [old]
        await refreshed.refresh_certificates()
        assert set(refreshed.platform_keys.certs) == {old, new}

        key = unique_key("FS")
        await refreshed.hold(hold_request(key, 100, NOTIFY))
        before = [await refreshed.query(key) for _ in range(10)]
        assert {r.outcome for r in before} == {Outcome.APPROVED}
        assert set(refreshed_t.serials) == {old}  # published, not yet signing

        await control.aadvance(ROTATION_LEAD_S + 60)
        refreshed_t.serials.clear()
        during = [await refreshed.query(key) for _ in range(30)]
        assert {r.outcome for r in during} == {Outcome.APPROVED}
        assert set(refreshed_t.serials) == {old, new}  # both sign, at random
        stale_results = [await stale.query(key) for _ in range(30)]
        refused = [r for r in stale_results if r.outcome is not Outcome.APPROVED]
        assert refused and {r.reason for r in refused} == {"bad_response_signature"}
        assert all("unknown_serial" in r.message for r in refused)
        assert await stale.refresh_certificates() >= 2  # the scheduled refresh heals it
        assert {(await stale.query(key)).outcome for _ in range(10)} == {Outcome.APPROVED}

        await control.aadvance(OVERLAP_S)
        refreshed_t.serials.clear()
        after = [await refreshed.query(key) for _ in range(10)]
        assert {r.outcome for r in after} == {Outcome.APPROVED}
        assert set(refreshed_t.serials) == {new}
        await refreshed.refresh_certificates()  # the retired certificate is no longer listed
        assert new in refreshed.platform_keys.certs
        query = await refreshed.query(key)
        assert query.payment is not None and query.payment.state is PaymentState.AWAITING_CUSTOMER
    finally:
        await refreshed.aclose()
        await stale.aclose()
