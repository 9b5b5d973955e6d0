"""``--faults`` parsing: each key lands on its simulator's setting; bad specs say why."""

from __future__ import annotations

import pytest

from loadtest.faults import TIMEOUT_HOLD_S, FaultSpecError, parse_faults


def test_issue_example_maps_onto_simulator_settings() -> None:
    plan = parse_faults("channel-timeouts=10%,callback-loss=10%,callback-dup=10%,pump-drop=1%")
    assert plan.provider == {"timeout_rate": 0.1, "callback_drop": 0.1, "callback_duplicate": 0.1}
    assert plan.pump == {"drop_reply_probability": 0.01}
    assert plan.provider_settings()["timeout_hold_s"] == TIMEOUT_HOLD_S
    assert not plan.empty


def test_bare_number_is_a_fraction_and_blanks_are_ignored() -> None:
    plan = parse_faults(" callback-reorder = 0.25 , ,")
    assert plan.provider == {"callback_reorder": 0.25}
    assert plan.pump == {}
    assert "timeout_hold_s" not in plan.provider_settings()


def test_empty_spec_is_no_fault() -> None:
    assert parse_faults("").empty


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("disk-full=10%", "unknown fault 'disk-full'"),
        ("pump-drop", "expected KEY=PERCENT"),
        ("pump-drop=ten", "not a percentage"),
        ("pump-drop=150%", "not within 0%..100%"),
        ("pump-drop=-1%", "not within 0%..100%"),
        ("pump-drop=nan", "not within 0%..100%"),
        ("pump-drop=1%,pump-drop=2%", "given twice"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse_faults(spec)
