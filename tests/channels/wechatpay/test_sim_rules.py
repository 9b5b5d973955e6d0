"""The simulated WeChat Pay's own rules, without HTTP: fees, prepay idempotency, closing,
refund bounds, the bill it writes, and its key rotation and signing modes."""

from __future__ import annotations

import random
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from channels.model import BillKind, Provider
from channels.sim.base import SimMerchant
from channels.sim.ledger import Ledger, Trade
from channels.sim.wechatpay import VERIFY_CYCLE, WeChatPaySim
from channels.sim.wechatpay_bill import bill_rows, render_tradebill
from channels.sim.wechatpay_keys import OVERLAP_S, ROTATION_LEAD_S, ProviderKeys
from channels.sim.wechatpay_trades import (
    SimApiError,
    accept_refund,
    close,
    fee_of_payment,
    fee_of_refund,
    mark_paid,
    prepay,
)
from channels.wechatpay import load_merchant, merchant_dir, parse_tradebill
from channels.wechatpay.times import CST
from tests.channels.wechatpay.support import APPID, MCHID

WX = Provider.WECHATPAY


def test_fees_as_the_fixture_bill_has_them() -> None:
    assert fee_of_payment(30000) == 180000  # 300.00 → 1.80000
    assert fee_of_payment(20000) == 120000
    assert fee_of_payment(8888) == 53000  # 0.53328 rounds to 0.53 at the fen
    assert fee_of_payment(1) == 0
    assert fee_of_refund(120000, 3750, 20000) == 22500  # -0.22500 on the refund row


def _request(no: str = "FS20261120000001", total: int = 20000) -> dict[str, object]:
    return {
        "appid": APPID,
        "mchid": MCHID,
        "description": "92#",
        "out_trade_no": no,
        "notify_url": "http://127.0.0.1:9/n",
        "amount": {"total": total, "currency": "CNY"},
        "payer": {"openid": "o1"},
    }


def test_prepay_idempotency_and_states() -> None:
    ledger, rng = Ledger(), random.Random(1)
    ids: dict[tuple[str, str], str] = {}
    trade, prepay_id, created = prepay(ledger, MCHID, _request(), 0.0, rng, ids)
    assert created and trade.state == "NOTPAY"
    again, same_id, created = prepay(ledger, MCHID, _request(), 1.0, rng, ids)
    assert (again, same_id, created) == (trade, prepay_id, False)
    with pytest.raises(SimApiError) as info:
        prepay(ledger, MCHID, _request(total=20001), 1.0, rng, ids)
    assert (info.value.status, info.value.code) == (403, "OUT_TRADE_NO_USED")
    mark_paid(ledger, trade, 2.0, rng)
    assert len(trade.provider_ref) == 28 and ledger.by_ref(WX, trade.provider_ref) is trade
    with pytest.raises(SimApiError) as info:
        prepay(ledger, MCHID, _request(), 3.0, rng, ids)
    assert info.value.code == "ORDERPAID"
    with pytest.raises(SimApiError) as info:
        close(trade, 3.0)
    assert info.value.code == "ORDERPAID"
    other, _, _ = prepay(ledger, MCHID, _request("FS20261120000002"), 0.0, rng, ids)
    close(other, 4.0)
    close(other, 5.0)  # closing twice is fine
    assert other.state == "CLOSED" and other.finished_at == 4.0
    with pytest.raises(SimApiError) as info:
        prepay(ledger, MCHID, _request("FS20261120000002"), 6.0, rng, ids)
    assert info.value.code == "ORDER_CLOSED"


def _refund(no: str, fen: int, total: int = 20000) -> dict[str, object]:
    return {
        "out_trade_no": "FS20261120000001",
        "out_refund_no": no,
        "amount": {"refund": fen, "total": total},
    }


def test_refunds_never_exceed_what_was_paid() -> None:
    ledger, rng = Ledger(), random.Random(2)
    trade, _, _ = prepay(ledger, MCHID, _request(), 0.0, rng, {})
    with pytest.raises(SimApiError) as info:
        accept_refund(ledger, trade, _refund("R0", 100), 1.0, rng)
    assert info.value.code == "INVALID_REQUEST"  # not paid yet
    mark_paid(ledger, trade, 1.0, rng)
    first = accept_refund(ledger, trade, _refund("R1", 15000), 2.0, rng)
    assert (first.state, first.fee_mfen, trade.state, trade.refunded_fen) == (
        "PROCESSING",
        90000,
        "REFUND",
        15000,
    )
    with pytest.raises(SimApiError) as info:
        accept_refund(ledger, trade, _refund("R2", 5001), 3.0, rng)
    assert info.value.code == "INVALID_REQUEST"
    with pytest.raises(SimApiError) as info:
        accept_refund(ledger, trade, _refund("R2", 100, total=19999), 3.0, rng)
    assert info.value.code == "PARAM_ERROR"
    accept_refund(ledger, trade, _refund("R2", 5000), 3.0, rng)
    assert trade.refunded_fen == trade.paid_fen == 20000


def _paid_trade(
    no: str, total: int, paid_at: datetime, rng: random.Random, ledger: Ledger
) -> Trade:
    trade, _, _ = prepay(ledger, MCHID, _request(no, total), paid_at.timestamp(), rng, {})
    mark_paid(ledger, trade, paid_at.timestamp(), rng)
    return trade


def test_rendered_bill_parses_to_the_ledger() -> None:
    ledger, rng = Ledger(), random.Random(3)
    day = date(2026, 11, 20)
    a = _paid_trade(
        "FS20261120000001", 30000, datetime(2026, 11, 20, 7, 41, 9, tzinfo=CST), rng, ledger
    )
    b = _paid_trade(
        "FS20261120000002", 20000, datetime(2026, 11, 20, 12, 5, 33, tzinfo=CST), rng, ledger
    )
    c = _paid_trade(
        "FS20261120000003", 8888, datetime(2026, 11, 20, 23, 59, 59, tzinfo=CST), rng, ledger
    )
    _paid_trade("FS20261121000001", 100, datetime(2026, 11, 21, 0, 0, 0, tzinfo=CST), rng, ledger)
    at = datetime(2026, 11, 20, 12, 31, 2, tzinfo=CST).timestamp()
    accept_refund(
        ledger, b, {**_refund("FS20261120000002-R1", 3750), "out_trade_no": b.out_trade_no}, at, rng
    )
    b.refunds["FS20261120000002-R1"].state = "SUCCESS"
    late = datetime(2026, 11, 21, 0, 0, 1, tzinfo=CST).timestamp()  # refund booked the next day
    accept_refund(
        ledger,
        a,
        {**_refund("FS20261120000001-R1", 100, 30000), "out_trade_no": a.out_trade_no},
        late,
        rng,
    )
    bill_file = render_tradebill(bill_rows(ledger.trades(WX, MCHID), day, APPID))
    assert bill_file.content.startswith("\ufeff交易时间".encode())
    assert b"\r\n" in bill_file.content and b"`" in bill_file.content
    bill = parse_tradebill(bill_file.content, day)
    assert [r.out_trade_no for r in bill.rows] == [
        a.out_trade_no,
        b.out_trade_no,
        b.out_trade_no,
        c.out_trade_no,
    ]
    assert [r.kind for r in bill.rows].count(BillKind.REFUND) == 1
    assert bill.summary is not None
    # the fixture bill's figures, less its coupon (the simulator grants none)
    assert (bill.summary.settled_fen, bill.summary.refund_fen, bill.summary.fee_mfen) == (
        58888,
        3750,
        330500,
    )
    assert bill.summary.order_total_fen == 58888
    assert render_tradebill(bill_rows(ledger.trades(WX, MCHID), day, APPID)).sha1 == bill_file.sha1


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys_root = tmp_path_factory.mktemp("keys")
    merchants = [SimMerchant(str(1900000109 + i), f"wxd678efh567h{6787 + i:05d}") for i in range(3)]
    WeChatPaySim.ensure_keys(keys_root, merchants)
    return keys_root / "wechatpay"


def test_signing_modes(sim_root: Path) -> None:
    keys = ProviderKeys(sim_root)
    assert [keys.merchants[m].verify_mode for m in sorted(keys.merchants)] == list(VERIFY_CYCLE)
    now, rng = time.time(), random.Random(4)
    cert_serials = {e.signer.serial for e in keys.signing_certs(now)}
    first, mixed, public = sorted(keys.merchants)
    assert {keys.signer_for(first, now, rng).serial for _ in range(20)} == cert_serials
    seen = {keys.signer_for(mixed, now, rng).serial for _ in range(40)}
    assert cert_serials < seen and any(s.startswith("PUB_KEY_ID_") for s in seen)
    public_key = keys.merchants[public].public_key
    assert public_key is not None
    assert {keys.signer_for(public, now, rng).serial for _ in range(10)} == {public_key.serial}
    # the switch's material holds what each merchant is signed with
    for mchid in keys.merchants:
        platform = load_merchant(merchant_dir(sim_root, mchid)).platform
        assert set(platform.serials) >= {keys.signer_for(mchid, now, rng).serial}


def test_rotation_schedule(sim_root: Path) -> None:
    keys = ProviderKeys(sim_root)
    now, rng = time.time(), random.Random(5)
    (old,) = [e.signer.serial for e in keys.signing_certs(now)]
    rotated = keys.rotate(now)
    new = rotated["serial"]
    assert rotated["retiring"] == [old] and len(new) == 40 and new != old
    assert {c.serial for c in keys.listed(now)} == {old, new}  # published at once
    assert {keys.signer_for(min(keys.merchants), now, rng).serial for _ in range(20)} == {old}
    during = now + ROTATION_LEAD_S + 1
    assert {keys.signer_for(min(keys.merchants), during, rng).serial for _ in range(40)} == {
        old,
        new,
    }
    after = now + ROTATION_LEAD_S + OVERLAP_S + 1
    assert {keys.signer_for(min(keys.merchants), after, rng).serial for _ in range(20)} == {new}
    assert {c.serial for c in keys.listed(after)} == {new}
    assert ProviderKeys(sim_root).platform.keys() == keys.platform.keys()  # the schedule is on disk


def test_ensure_keys_is_idempotent(sim_root: Path) -> None:
    before = (merchant_dir(sim_root, MCHID) / "apiclient_key.pem").read_bytes()
    WeChatPaySim.ensure_keys(sim_root.parent, [SimMerchant(MCHID, "wxd678efh567h06787")])
    assert (merchant_dir(sim_root, MCHID) / "apiclient_key.pem").read_bytes() == before
