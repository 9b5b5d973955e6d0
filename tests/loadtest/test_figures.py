"""Histograms, one-second windows, the /metrics quantile, the report's keys and the chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadtest.load_report import REQUIRED_KEYS, figures, verdicts, write_results
from loadtest.scrape import add_buckets, bucket_quantile, parse_buckets
from loadtest.stats import (
    CREATE,
    LAG,
    SALE,
    ProcessSample,
    Recorder,
    ResourceSample,
    percentiles,
)
from switch.invariants import Violation, ViolationKind


def _recorder() -> Recorder:
    recorder = Recorder()
    for i in range(100):  # 1..100 ms create latency, sales completing over 4 s
        recorder.arrived += 1
        recorder.latency(CREATE, (i + 1) / 1000, at_s=i / 25)
        recorder.latency(LAG, 0.001)
        recorder.sale_completed(at_s=i / 25, sale_s=2.0 + i / 100, volume_ml=3000)
    recorder.error("no_free_pump", 0.5)
    recorder.error("no_free_pump", 3.5)
    recorder.sample(ResourceSample(0.2, 50.0, 100.0))
    recorder.sample(ResourceSample(1.2, 150.0, 120.0))
    for t in (1.2, 2.2):
        cpu = {"switch": 1.5, "loadgen": 0.1, "other": 0.2}
        recorder.sample_processes(ProcessSample(t, 1.0, cpu, {"switch": 120.0}, 90.0))
    for i in range(10):
        recorder.order_accepted(i / 10)
    recorder.customer_shed(0.5)
    return recorder


def test_histogram_percentiles_are_within_three_digits() -> None:
    recorder = _recorder()
    create = percentiles(recorder.histograms[CREATE])
    assert create["p50"] == pytest.approx(0.050, rel=1e-3)
    assert create["p99"] == pytest.approx(0.099, rel=1e-3)
    assert create["max"] == pytest.approx(0.100, rel=1e-3)
    assert percentiles(Recorder().histograms[SALE])["p99"] is None


def test_series_has_one_row_per_second() -> None:
    series = _recorder().series(6)
    assert [row["t_s"] for row in series] == [0, 1, 2, 3, 4, 5]
    assert [row["completed"] for row in series] == [25, 25, 25, 25, 0, 0]
    assert [row["errors"] for row in series] == [1, 0, 0, 1, 0, 0]
    assert series[0]["create_p99_ms"] == pytest.approx(25.0, rel=1e-2)
    assert series[1]["cpu_pct"] == 150.0 and series[2]["cpu_pct"] is None
    assert series[5]["sale_p50_s"] is None
    assert series[0]["accepted"] == 10 and series[0]["shed"] == 1
    assert series[1]["cpu_pct_by_process"] == {"switch": 150.0, "loadgen": 10.0, "other": 20.0}
    assert series[0]["cpu_pct_by_process"] is None and series[2]["machine_cpu_pct"] == 90.0


def test_bucket_quantile_interpolates_like_prometheus() -> None:
    text = "\n".join(
        [
            "# TYPE fuelswitch_pump_poll_seconds histogram",
            'fuelswitch_pump_poll_seconds_bucket{protocol="gfd1",le="0.001"} 50.0',
            'fuelswitch_pump_poll_seconds_bucket{protocol="gfd1",le="0.01"} 90.0',
            'fuelswitch_pump_poll_seconds_bucket{protocol="gfd1",le="+Inf"} 100.0',
            'fuelswitch_pump_poll_seconds_bucket{protocol="dart",le="0.001"} 0.0',
            'fuelswitch_pump_poll_seconds_bucket{protocol="dart",le="0.01"} 0.0',
            'fuelswitch_pump_poll_seconds_bucket{protocol="dart",le="+Inf"} 0.0',
            'fuelswitch_pump_poll_seconds_count{protocol="gfd1"} 100.0',
        ]
    )
    buckets = parse_buckets(text, "fuelswitch_pump_poll_seconds")
    assert buckets == {0.001: 50.0, 0.01: 90.0, math.inf: 100.0}
    assert bucket_quantile(buckets, 0.5) == pytest.approx(0.001)
    assert bucket_quantile(buckets, 0.7) == pytest.approx(0.0055)
    assert bucket_quantile(buckets, 0.99) == pytest.approx(0.01)  # in +Inf: highest bound
    doubled = add_buckets(buckets, buckets)
    assert doubled[0.01] == 180.0
    assert bucket_quantile({}, 0.5) is None


def _result(violations: list[Violation], **extra: object) -> dict[str, Any]:
    return figures(
        _recorder(),
        rate=25.0,
        duration_s=4.0,
        callback_s=[0.01, 0.02, 0.2],
        poll_ms={"p50": 1.0, "p99": 5.0},
        violations=violations,
        extra={"scenario": "unit", **extra},
    )


def test_report_has_the_issue_keys_and_verdicts() -> None:
    result = _result([], recovery_s=3.0, kill_at_s=2.0)
    assert set(REQUIRED_KEYS) <= set(result)
    assert result["sales_per_s"] == 25.0 and result["violations"] == 0
    assert result["callback_to_authorized_p99_ms"] == pytest.approx(200.0, rel=1e-2)
    assert result["errors"] == {"no_free_pump": 2}
    assert result["switch_cpu_pct"] == 100.0 and result["switch_rss_mb"] == 120.0
    assert result["accepted"] == 10 and result["shed"] == 1 and result["shed_per_s"] == 0.25
    assert result["cpu_pct_by_process"] == {"loadgen": 10.0, "other": 20.0, "switch": 150.0}
    assert result["cpu_ms_per_sale_by_process"]["switch"] == 30.0  # 3 s of CPU, 100 sales
    assert result["machine_cpu_pct"] == 90.0
    ok = verdicts(result)
    assert ok == {
        "callback_to_authorized_p99_ms": False,
        "violations": True,
        "recovery_s": True,
        "sales_per_s": True,
    }
    broken = Violation(ViolationKind.HOLD_LEFT_OPEN, "O0000000000000001", "held 100")
    assert verdicts(_result([broken]))["violations"] is False
    assert "recovery_s" not in verdicts(_result([]))  # no kill asked: no such target


def test_results_file_and_chart_are_written(tmp_path: Path) -> None:
    recorder = _recorder()
    result = _result([], kill_at_s=2.0, recovery_s=1.5)
    broken = Violation(ViolationKind.PUMP_TOTALS, "s001/1/1", "moved 10, sold 0")
    json_path, chart = write_results(tmp_path, result, recorder.series(4), [broken])
    document = orjson.loads(json_path.read_bytes())
    assert document["sales_per_s"] == 25.0
    assert len(document["series"]) == 4
    assert document["violation_list"][0]["kind"] == "pump_totals"
    assert chart == tmp_path / "result.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
