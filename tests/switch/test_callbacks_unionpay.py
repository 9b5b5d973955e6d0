"""UnionPay callback cases 26-29 (specs/callback-cases.md) against the switch's HTTP endpoint.

The switch runs on a real socket with a real database (tests/switch/callback_harness.py) and
verifies with ``UnionPayChannel``s configured from the provider simulator's keys. Bad notifies
are built from a good one (the simulator's signing key, signed by hand in the 5.1.0 way) and
broken in one respect each; case 29 uses the simulator process itself, whose notifies go to
the switch as they would in production.

"Reject" means: a 500 answer (UnionPay retries anything but 200), the attempt unchanged, no
inbox row, and the rejection counted under its reason.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
import trio

from channels.config import ChannelConfig
from channels.interface import CallbackVerifier
from channels.model import CallbackEvent, HoldRequest, HttpReply, Outcome, Provider
from channels.unionpay import (
    UNIONPAY_COMPANY,
    ProviderCredentials,
    TestPki,
    UnionPayChannel,
    encode_form,
    issue_certificate,
    sign_keyed,
    unionpay_common_name,
)
from switch.store import Store
from tests.channels.provider_sim import SAFE, ProviderSimProcess
from tests.channels.unionpay.support import notify_fields, signed_by
from tests.switch.callback_harness import (
    CallbackServer,
    alerts,
    attempt_state,
    callback_server,
    create_order_with_hold,
    inbox_rows,
    unique_key,
)

UNIONPAY = Provider.UNIONPAY
CHANNEL = "unionpay-main"


@pytest.fixture(scope="module")
def sim() -> Iterator[ProviderSimProcess]:
    """The provider simulators: UnionPay's keys, and UnionPay itself for case 29."""
    with ProviderSimProcess() as process:
        yield process


@pytest.fixture(scope="module")
def mer_id(sim: ProviderSimProcess) -> str:
    merchant_id: str = sim.ready["merchants"]["unionpay"][0]["merchant_id"]
    return merchant_id


@pytest.fixture(scope="module")
def unionpay(sim: ProviderSimProcess) -> ProviderCredentials:
    """UnionPay's private side (its signing key and CA), as the simulator holds it."""
    return ProviderCredentials.load(sim.keys)


def _config(sim: ProviderSimProcess, mer_id: str, notify_url: str = "") -> ChannelConfig:
    return ChannelConfig(
        name=CHANNEL,
        provider=UNIONPAY,
        base_url=sim.url("unionpay"),
        merchant_id=mer_id,
        app_id="",
        keys_dir=sim.keys / "unionpay" / mer_id,
        notify_url=notify_url or "http://127.0.0.1:9/callbacks/unionpay",
    )


class VerifyOnly:
    """The channel's own verification without its queryTrans confirmation: for the notifies
    built by hand below, which UnionPay never sent and so could never confirm. What is tested
    with it is decided before the switch would ask UnionPay."""

    def __init__(self, channel: UnionPayChannel) -> None:
        self.channel = channel
        self.provider = channel.provider
        self.channel_name = channel.channel_name

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        return self.channel.verify_callback(headers, body, now)

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return self.channel.ack(accepted, message)


@asynccontextmanager
async def switch(
    store: Store, sim: ProviderSimProcess, mer_id: str, *, confirm: bool = True
) -> AsyncIterator[CallbackServer]:
    channel = UnionPayChannel.from_config(_config(sim, mer_id))
    verifier: CallbackVerifier = channel if confirm else VerifyOnly(channel)
    try:
        async with callback_server(store, [verifier], routing_keys={CHANNEL: mer_id}) as server:
            yield server
    finally:
        await channel.aclose()


async def _order(store: Store, amount_fen: int = 20000) -> str:
    key = unique_key("FS")
    await create_order_with_hold(
        store,
        order_id=key,
        channel=CHANNEL,
        provider=UNIONPAY,
        out_trade_no=key,
        amount_fen=amount_fen,
    )
    return key


def _hold_notify(mer_id: str, key: str, **overrides: str) -> dict[str, str]:
    """A pre-authorization success notify for ``key`` (unsigned)."""
    now = datetime.now(UTC) + timedelta(hours=8)
    fields = {
        "merId": mer_id,
        "orderId": key,
        "txnTime": f"{now:%Y%m%d%H%M%S}",
        "queryId": f"{now:%y%m%d%H%M%S}{secrets.randbelow(10**9):09d}",
        **overrides,
    }
    return notify_fields(**fields)


async def _assert_rejected(
    server: CallbackServer, store: Store, key: str, body: bytes, reason: str
) -> None:
    response = await server.post(UNIONPAY, body)
    assert response.status_code == 500, response.content
    assert response.content.startswith(reason.encode())
    assert server.count(UNIONPAY, "rejected", reason) >= 1
    assert await attempt_state(store, key) == "requested"
    assert await inbox_rows(store, provider=UNIONPAY, order_id=key) == []


async def test_a_good_notify_is_accepted(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    """The baseline every rejection below is a variation of."""
    key = await _order(store)
    body = encode_form(signed_by(_hold_notify(mer_id, key), unionpay.signing))
    async with switch(store, sim, mer_id, confirm=False) as server:
        response = await server.post(UNIONPAY, body)
        assert (response.status_code, response.content) == (200, b"ok")
        assert server.count(UNIONPAY, "accepted", "applied") == 1
    assert await attempt_state(store, key) == "approved"


async def test_a_signed_notify_unionpay_cannot_confirm_is_not_acted_on(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    """Signed with UnionPay's own key, but queryTrans has never heard of it: ACP's rule is to
    act on a money-moving notify only after the query agrees, so the switch refuses it."""
    key = await _order(store)
    body = encode_form(signed_by(_hold_notify(mer_id, key), unionpay.signing))
    async with switch(store, sim, mer_id) as server:
        await _assert_rejected(server, store, key, body, "unconfirmed")


# -- case 26: the certificate chain ----------------------------------------------------------


async def test_case_26_a_certificate_outside_the_configured_chain(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    now = datetime.now(UTC)
    stranger = TestPki.generate(now)  # same names, another root
    expired = issue_certificate(
        common_name=unionpay_common_name(99),
        organization=UNIONPAY_COMPANY,
        issuer=unionpay.intermediate,  # the right CA, but out of date
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1),
        ca=False,
    )
    async with switch(store, sim, mer_id) as server:
        key = await _order(store)
        wrong_root = signed_by(_hold_notify(mer_id, key), stranger.signing)
        await _assert_rejected(server, store, key, encode_form(wrong_root), "bad_cert_chain")
        key = await _order(store)
        old = signed_by(_hold_notify(mer_id, key), expired)
        await _assert_rejected(server, store, key, encode_form(old), "cert_expired")


# -- case 27: downgrades ---------------------------------------------------------------------


async def test_case_27_a_sha1_signature_or_a_keyed_sign_method(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    async with switch(store, sim, mer_id) as server:
        key = await _order(store)
        sha1 = signed_by(_hold_notify(mer_id, key), unionpay.signing, algorithm="sha1")
        await _assert_rejected(server, store, key, encode_form(sha1), "signature_type")
        for method in ("11", "12"):
            key = await _order(store)
            keyed = _hold_notify(mer_id, key, signMethod=method)
            keyed["signature"] = sign_keyed(keyed, "a-guessed-secure-key", method)
            await _assert_rejected(server, store, key, encode_form(keyed), "sign_method")


# -- case 28: tampering, another merchant, a refund on the payment -----------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("txnAmt", "1"), ("orderId", None), ("respCode", "00")]
)
async def test_case_28_a_field_changed_after_signing(
    store: Store,
    sim: ProviderSimProcess,
    mer_id: str,
    unionpay: ProviderCredentials,
    field: str,
    value: str | None,
) -> None:
    async with switch(store, sim, mer_id) as server:
        key = await _order(store)
        other = await _order(store)
        base = {"respCode": "64", "respMsg": "余额不足"} if field == "respCode" else {}
        fields = signed_by(_hold_notify(mer_id, key, **base), unionpay.signing)
        fields[field] = other if value is None else value
        await _assert_rejected(server, store, key, encode_form(fields), "bad_signature")
        assert await attempt_state(store, other) == "requested"


async def test_case_28_a_signed_notify_for_another_merchant(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    async with switch(store, sim, mer_id) as server:
        key = await _order(store)
        foreign = signed_by(_hold_notify("898111111111111", key), unionpay.signing)
        await _assert_rejected(server, store, key, encode_form(foreign), "unknown_merchant")
    assert any(a.details.get("reason") == "unknown_merchant" for a in await alerts(store))


async def test_case_28_a_refund_notify_on_the_payment(
    store: Store, sim: ProviderSimProcess, mer_id: str, unionpay: ProviderCredentials
) -> None:
    async with switch(store, sim, mer_id, confirm=False) as server:
        key = await _order(store)
        refund = _hold_notify(
            mer_id,
            key,  # the payment's own key, not a refund's
            txnType="04",
            txnSubType="00",
            origQryId="261120101500000000001",
            reqReserved=key,
        )
        await _assert_rejected(
            server, store, key, encode_form(signed_by(refund, unionpay.signing)), "kind_mismatch"
        )


# -- case 29: duplicates, early notifies, confirmation by queryTrans ---------------------------


async def _approved(store: Store, key: str) -> None:
    """Until the attempt is approved (bounded: the switch acknowledges after its commit)."""
    with trio.fail_after(SAFE):
        while True:
            if await attempt_state(store, key) == "approved":
                return
            await trio.sleep(0.05)


async def _hold_at_unionpay(
    sim: ProviderSimProcess, mer_id: str, server: CallbackServer
) -> tuple[UnionPayChannel, str]:
    """A channel that sends the simulator's notifies to this switch, and a fresh key."""
    cfg = _config(sim, mer_id, notify_url=f"{server.url}/callbacks/unionpay")
    return UnionPayChannel.from_config(cfg), unique_key("FS")


async def test_case_29_a_duplicated_notify_moves_the_attempt_once_and_is_confirmed(
    store: Store, sim: ProviderSimProcess, mer_id: str
) -> None:
    control = sim.control
    async with switch(store, sim, mer_id) as server:
        client, key = await _hold_at_unionpay(sim, mer_id, server)
        try:
            await create_order_with_hold(
                store,
                order_id=key,
                channel=CHANNEL,
                provider=UNIONPAY,
                out_trade_no=key,
                amount_fen=20000,
            )
            hold = await client.hold(HoldRequest(key, 20000, "92号汽油", "", "", datetime.now(UTC)))
            assert hold.outcome is Outcome.PENDING
            await control.aset_faults("unionpay", callback_duplicate=1.0)
            try:
                await control.acustomer("unionpay", key, "pay")
                status = await client.query(key)
                assert status.provider_ref
                event_id = status.provider_ref
                sent = await control.await_callbacks(
                    lambda rs: len(rs) >= 2 and all(r["status"] for r in rs),
                    provider="unionpay",
                    event_key=event_id,
                )
            finally:
                await control.aset_faults("unionpay")
            await _approved(store, key)
            assert [(r["attempt"], r["copy"], r["status"]) for r in sent] in (
                [(1, 1, 200), (1, 2, 200)],
                [(1, 2, 200), (1, 1, 200)],
            )
            assert len(await inbox_rows(store, provider=UNIONPAY, event_id=event_id)) == 1
            assert server.count(UNIONPAY, "accepted", "applied") == 1
            assert server.count(UNIONPAY, "duplicate", "duplicate") == 1
            (applied,) = server.applied
            # The notify said money moved; the switch confirmed it with queryTrans first.
            assert applied.event.raw["confirm_with_query"] is True
        finally:
            await client.aclose()


async def test_case_29_a_notify_before_the_order_is_persisted(
    store: Store, sim: ProviderSimProcess, mer_id: str
) -> None:
    control = sim.control
    async with switch(store, sim, mer_id) as server:
        client, key = await _hold_at_unionpay(sim, mer_id, server)
        try:
            hold = await client.hold(HoldRequest(key, 15000, "", "", "", datetime.now(UTC)))
            assert hold.outcome is Outcome.PENDING
            await control.acustomer("unionpay", key, "pay")
            status = await client.query(key)
            assert status.provider_ref
            event_id = status.provider_ref
            first = await control.await_callbacks(
                lambda rs: len(rs) >= 1, provider="unionpay", event_key=event_id
            )
            assert (first[0]["status"], first[0]["accepted"]) == (500, False)
            assert server.count(UNIONPAY, "rejected", "unknown_order") == 1
            await create_order_with_hold(  # the switch's write lands after the notify
                store,
                order_id=key,
                channel=CHANNEL,
                provider=UNIONPAY,
                out_trade_no=key,
                amount_fen=15000,
            )
            await control.aadvance(61)  # UnionPay's first retry is a minute later
            await _approved(store, key)
            sends = await control.await_callbacks(
                lambda rs: any(r["accepted"] for r in rs), provider="unionpay", event_key=event_id
            )
            assert [r["attempt"] for r in sends] == [1, 2]
            assert server.count(UNIONPAY, "accepted", "applied") == 1
            assert len(await inbox_rows(store, provider=UNIONPAY, event_id=event_id)) == 1
            (applied,) = server.applied
            assert await client.confirm_callback(applied.event) is applied.event
        finally:
            await client.aclose()
