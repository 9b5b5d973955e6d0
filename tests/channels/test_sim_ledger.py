"""The simulators' ledger: lookups by merchant key, provider reference and refund key; locks."""

from __future__ import annotations

import orjson
import pytest
import trio
import trio.lowlevel

from channels.model import Provider
from channels.sim import Ledger, SimRefund, Trade

WX, ALI = Provider.WECHATPAY, Provider.ALIPAY


def trade(no: str, provider: Provider = WX, merchant: str = "1900000109", ref: str = "") -> Trade:
    return Trade(
        provider=provider,
        merchant_id=merchant,
        out_trade_no=no,
        provider_ref=ref or f"ref-{no}",
        kind="payment",
        amount_fen=20_000,
        state="NOTPAY",
        params={"amount": {"total": 20_000, "currency": "CNY"}, "out_trade_no": no},
        created_at=1_700_000_000.0,
    )


def test_get_by_key_and_by_reference() -> None:
    ledger = Ledger()
    t = ledger.add(trade("FS1"))
    assert ledger.get(WX, "1900000109", "FS1") is t
    assert ledger.get(WX, "1900000110", "FS1") is None  # keys are per merchant
    assert ledger.get(ALI, "1900000109", "FS1") is None
    assert ledger.by_ref(WX, "ref-FS1") is t
    assert ledger.by_ref(ALI, "ref-FS1") is None
    assert ledger.by_ref(WX, "nope") is None
    assert len(ledger) == 1


def test_the_same_key_twice_is_refused() -> None:
    ledger = Ledger()
    ledger.add(trade("FS1"))
    with pytest.raises(ValueError, match="already exists"):
        ledger.add(trade("FS1", ref="other"))
    ledger.add(trade("FS1", merchant="1900000110"))  # another merchant may use it
    assert len(ledger) == 2


def test_extra_references_and_a_reference_set_after_adding() -> None:
    ledger = Ledger()
    hold = ledger.add(trade("FS2", provider=ALI, ref="AUTH-1"))
    ledger.add_ref(hold, "TRADE-9")
    assert ledger.by_ref(ALI, "AUTH-1") is hold
    assert ledger.by_ref(ALI, "TRADE-9") is hold
    late = ledger.add(trade("FS3"))
    late.provider_ref = "4200000001"  # the transaction id, known only once paid
    assert ledger.by_ref(WX, "4200000001") is late


def test_refunds_are_found_by_their_key_per_merchant() -> None:
    ledger = Ledger()
    t = ledger.add(trade("FS4"))
    refund = ledger.add_refund(t, SimRefund("FS4-R1", "5030001", 1_000, "PROCESSING", 1.0))
    assert ledger.refund(WX, "1900000109", "FS4-R1") == (t, refund)
    assert ledger.refund(WX, "1900000110", "FS4-R1") is None
    assert ledger.refund(WX, "1900000109", "FS4-R2") is None
    assert ledger.by_ref(WX, "5030001") is t
    with pytest.raises(ValueError, match="already exists"):
        ledger.add_refund(t, SimRefund("FS4-R1", "5030002", 1_000, "PROCESSING", 2.0))
    # a simulator that puts a refund straight into the trade is still found
    t.refunds["FS4-R3"] = SimRefund("FS4-R3", "5030003", 500, "SUCCESS", 3.0)
    found = ledger.refund(WX, "1900000109", "FS4-R3")
    assert found is not None
    assert found[1].amount_fen == 500


def test_trades_filter_and_keep_their_order() -> None:
    ledger = Ledger()
    ledger.add(trade("A"))
    ledger.add(trade("B", provider=ALI, merchant="2088123456789012"))
    ledger.add(trade("C", merchant="1900000110"))
    ledger.add(trade("D"))
    assert [t.out_trade_no for t in ledger.trades()] == ["A", "B", "C", "D"]
    assert [t.out_trade_no for t in ledger.trades(WX)] == ["A", "C", "D"]
    assert [t.out_trade_no for t in ledger.trades(WX, "1900000109")] == ["A", "D"]
    assert [t.out_trade_no for t in ledger.trades(merchant_id="2088123456789012")] == ["B"]


def test_snapshot_is_json() -> None:
    ledger = Ledger()
    t = ledger.add(trade("FS5"))
    ledger.add_refund(t, SimRefund("FS5-R1", "5030005", 700, "SUCCESS", 2.0, fee_mfen=42))
    ledger.add(trade("FS6", provider=ALI))
    snapshot = orjson.loads(orjson.dumps(ledger.snapshot(WX)))
    assert len(snapshot) == 1
    row = snapshot[0]
    assert row["provider"] == "wechatpay"
    assert row["out_trade_no"] == "FS5"
    assert row["params"]["amount"]["total"] == 20_000
    assert row["refunds"]["FS5-R1"]["fee_mfen"] == 42
    assert row["paid_at"] is None


async def test_one_lock_per_trade_serialises_check_and_update() -> None:
    ledger = Ledger()
    t = ledger.add(trade("FS7"))
    other = ledger.add(trade("FS8"))
    assert ledger.lock(t) is ledger.lock(t)
    assert ledger.lock(t) is not ledger.lock(other)
    t.paid_fen = 20_000
    results: list[bool] = []

    async def refund(no: str, amount: int) -> None:
        async with ledger.lock(t):
            ok = t.refunded_fen + amount <= t.paid_fen
            await trio.lowlevel.checkpoint()  # the provider's work in between
            if ok:
                t.refunded_fen += amount
                ledger.add_refund(t, SimRefund(no, f"ref-{no}", amount, "SUCCESS", 0.0))
            results.append(ok)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(refund, f"FS7-R{i}", 8_000)
    assert sorted(results) == [False, True, True]
    assert t.refunded_fen == 16_000
    assert len(t.refunds) == 2
