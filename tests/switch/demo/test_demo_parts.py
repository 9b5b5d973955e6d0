"""The demo's parts that can be checked without the whole forecourt: the seeded customer plan,
the configuration it writes (read back by the switch's own loader), the summary figures, and
the pump simulator driven through the demo's own process and control classes over real
sockets (the totals' movement equals the ledger's volume, as ``check_books`` expects).

The whole run is ``fuelswitch demo`` itself (``make demo``), which exits non-zero on any
violation of the books.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import trio

from channels.model import Provider
from switch.config import dump_config, load_config
from switch.demo import add_parser
from switch.demo.customers import Kind, Outcome, plan_customers
from switch.demo.procs import ChildProcess, DemoError
from switch.demo.report import Summary, percentile, print_summary, yuan, yuan_mfen
from switch.demo.sims import PumpControl, fetch_pump_ledger, pump_totals, totals_moved
from switch.demo.world import build_config, channel_plans
from switch.invariants import Violation, ViolationKind

SAFE = 30.0  # a bound for what must happen, never a measurement


def test_the_plan_is_seeded_and_keeps_post_pay_on_the_stand_alone_pump() -> None:
    stations = ["s001", "s002", "s003"]
    plan = plan_customers(200, stations, 4, seed=7, spread_s=30.0)
    assert plan == plan_customers(200, stations, 4, seed=7, spread_s=30.0)
    assert plan != plan_customers(200, stations, 4, seed=8, spread_s=30.0)
    assert [p.arrive_s for p in plan] == sorted(p.arrive_s for p in plan)
    assert all(0.0 <= p.arrive_s <= 30.0 for p in plan)
    assert {p.kind for p in plan} == set(Kind)
    for p in plan:
        assert (p.pump_no == 4) == (p.kind is Kind.POSTPAY), p
        assert p.station_id in stations and p.nozzle_no in (1, 2)
    # a payer id each provider accepts
    assert {len(p.payer_id) for p in plan if p.method == "wechatpay"} == {28}
    assert all(p.payer_id.startswith("2088") for p in plan if p.method == "alipay")


def _ready(port: int) -> dict[str, Any]:
    merchants = {
        "wechatpay": [
            {"merchant_id": "1900000109", "app_id": "wxd678efh567hg6787"},
            {"merchant_id": "1900000110", "app_id": "wxd678efh567h06788"},
        ],
        "alipay": [{"merchant_id": "2088123456789012", "app_id": "2021000000000001"}] * 2,
        "unionpay": [{"merchant_id": "777290058110048", "app_id": ""}] * 2,
    }
    urls = {p.value: f"http://127.0.0.1:{port + i}" for i, p in enumerate(Provider)}
    return {**urls, "control": f"http://127.0.0.1:{port + 9}", "keys": "/k", "merchants": merchants}


def test_the_written_config_is_what_the_switch_reads(tmp_path: Path) -> None:
    config = build_config(
        home=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:5432/demo",
        redis_url="redis://127.0.0.1:6379/0",
        secret=b"s" * 40,
        gateways=[("127.0.0.1", 5020), ("127.0.0.1", 5021)],
        pumps=4,
        providers={"main": _ready(7000), "backup": _ready(8000)},
        seed=3,
    )
    path = tmp_path / "switch.toml"
    path.write_text(dump_config(config), encoding="utf-8")
    loaded = load_config(path, env={})
    assert [s.id for s in loaded.stations] == ["s001", "s002"]
    assert [s.gateway for s in loaded.stations] == ["127.0.0.1:5020", "127.0.0.1:5021"]
    channels = {c.config.name: c.config for c in loaded.channels}
    assert list(channels) == [p.name for p in channel_plans()]
    # the two WeChat channels: other merchants, other simulator processes
    main, backup = channels["wechatpay-main"], channels["wechatpay-backup"]
    assert (main.merchant_id, main.base_url) == ("1900000109", "http://127.0.0.1:7000")
    assert (backup.merchant_id, backup.base_url) == ("1900000110", "http://127.0.0.1:8000")
    assert backup.keys_dir == Path("/k/wechatpay/1900000110")
    assert loaded.channels[0].routing["fee"]["rate_ppm"] == 6000


def _outcome(index: int, create_s: float) -> Outcome:
    plan = plan_customers(index + 1, ["s001"], 4, seed=1, spread_s=20.0)[0]
    return Outcome(plan, "O" + "0" * 16, {"state": "completed"}, create_s, create_s * 10)


def test_summary_figures_and_json() -> None:
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
        50.0,
        95.0,
        99.0,
    )
    assert percentile([3.0], 99) == 3.0
    assert (yuan(12345), yuan(-5), yuan_mfen(1_238_000), yuan_mfen(7)) == (
        "¥123.45",
        "-¥0.05",
        "¥12.38000",
        "¥0.00007",
    )
    violation = Violation(ViolationKind.HOLD_LEFT_OPEN, "O1H1", "still frozen")
    summary = Summary(
        customers=2,
        states={"completed": 2},
        sales=2,
        volume_ml=12_345,
        captured_fen=9_000,
        discount_fen=500,
        refunded_fen=0,
        channels=[],
        failovers=1,
        create_latency_s={"p50": 0.1},
        sale_latency_s={"p50": None},
        violations=(violation,),
    )
    out = summary.to_json()
    assert (out["sales"], out["failovers"], out["fees_mfen"]) == (2, 1, 0)
    assert out["violations"] == [
        {"kind": "hold_left_open", "subject": "O1H1", "detail": "still frozen"}
    ]
    from rich.console import Console

    console = Console(record=True, width=120)
    print_summary(console, summary)
    text = console.export_text()
    assert "12.345 L" in text and "hold_left_open O1H1" in text


def test_the_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["demo", "--customers", "5", "--stations", "2", "--json"])
    assert (args.customers, args.stations, args.json, args.keep, args.seed) == (
        5,
        2,
        True,
        False,
        1,
    )
    assert args.func.__name__ == "run"


async def test_a_process_that_never_gets_ready_is_reported(tmp_path: Path) -> None:
    child = ChildProcess("bad", ["sim", "pumps", "--stations", "0"], tmp_path, {})
    try:
        await child.start(timeout=SAFE)
    except DemoError as exc:
        assert "bad did not start" in str(exc)
    else:
        raise AssertionError("a simulator with 0 stations started")
    assert child.process is None and child.status == 1


async def test_pump_simulator_books_through_the_demo_controls(tmp_path: Path) -> None:
    """Post-pay at a stand-alone pump: the sale is in the ledger under the switch's station id,
    and the totalizer moved by exactly its volume."""
    child = ChildProcess(
        "pumps",
        ["sim", "pumps", "--stations", "2", "--pumps-per-station", "2", "--control-port", "0"],
        tmp_path,
        {},
    )
    ready = await child.start(timeout=SAFE)
    control = PumpControl(ready["control_port"], {0: "s001", 1: "s002"})
    try:
        before = await pump_totals(control, 2)
        assert set(before) == {(s, p, n) for s in ("s001", "s002") for p in (1, 2) for n in (1, 2)}
        await control.call("configure", station="s002", pump=2, mode=1)
        await control.call("customer", station="s002", pump=2, nozzle=2, hang_up_after_ml=800)
        with trio.fail_after(SAFE):
            while True:  # the simulator is another process: poll its ledger
                sales = await fetch_pump_ledger(control)
                if sales:
                    break
                await trio.sleep(0.1)
        [sale] = sales
        assert (sale["station"], sale["pump"], sale["nozzle"]) == ("s002", 2, 2)
        assert sale["volume_ml"] >= 800
        moved = totals_moved(before, await pump_totals(control, 2))
        assert moved[("s002", 2, 2)] == sale["volume_ml"]
        assert sum(moved.values()) == sale["volume_ml"]
        try:
            await control.call("lift", station="s001", pump=9, nozzle=1)
        except DemoError as exc:
            assert "refused lift" in str(exc)
        else:
            raise AssertionError("pump 9 does not exist")
        assert control.statistics()["calls"] >= 6
    finally:
        await control.aclose()
        assert await child.stop() == 0
    assert child.snapshot()["status"] == 0
