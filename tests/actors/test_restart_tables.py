"""Exit reasons, the restart-on-exit table and ``restart_group`` for each strategy.

Example tests pin the OTP semantics; hypothesis properties check ``restart_group`` over
generated child orders.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.policy import (
    ABNORMAL,
    KILLED,
    NORMAL,
    PASSIVATED,
    RESTART_ON_EXIT,
    SHUTDOWN,
    Exit,
    ExitKind,
    Restart,
    Strategy,
    restart_group,
    should_restart,
)
from tests.actors.support import PROPS

names = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8),
    min_size=1,
    max_size=12,
    unique=True,
)


# ---------------------------------------------------------------------------
# Exit reasons and the restart table
# ---------------------------------------------------------------------------


def test_abnormal_set_is_crashed_and_killed() -> None:
    assert frozenset({ExitKind.CRASHED, ExitKind.KILLED}) == ABNORMAL


@pytest.mark.parametrize(
    ("kind", "abnormal"),
    [
        (ExitKind.NORMAL, False),
        (ExitKind.SHUTDOWN, False),
        (ExitKind.PASSIVATED, False),
        (ExitKind.CRASHED, True),
        (ExitKind.KILLED, True),
    ],
)
def test_exit_abnormal_by_kind(kind: ExitKind, abnormal: bool) -> None:
    assert Exit(kind).abnormal is abnormal
    assert Exit(kind, RuntimeError("x")).abnormal is abnormal


def test_exit_constants() -> None:
    assert Exit(ExitKind.NORMAL) == NORMAL
    assert Exit(ExitKind.SHUTDOWN) == SHUTDOWN
    assert Exit(ExitKind.PASSIVATED) == PASSIVATED
    assert Exit(ExitKind.KILLED) == KILLED
    assert all(e.error is None for e in (NORMAL, SHUTDOWN, PASSIVATED, KILLED))


def test_exit_describe_without_error() -> None:
    assert NORMAL.describe() == "normal"
    assert KILLED.describe() == "killed"


def test_exit_describe_with_error() -> None:
    exit_ = Exit(ExitKind.CRASHED, ValueError("bad pump id"))
    assert exit_.describe() == "crashed: ValueError: bad pump id"


def test_exit_is_frozen() -> None:
    with pytest.raises(AttributeError):
        NORMAL.kind = ExitKind.CRASHED  # type: ignore[misc]


def test_restart_table_covers_every_pair() -> None:
    expected = {(r, abnormal) for r in Restart for abnormal in (False, True)}
    assert set(RESTART_ON_EXIT) == expected
    assert len(RESTART_ON_EXIT) == 6


def test_restart_table_values() -> None:
    for abnormal in (False, True):
        assert RESTART_ON_EXIT[Restart.PERMANENT, abnormal] is True
        assert RESTART_ON_EXIT[Restart.TEMPORARY, abnormal] is False
        assert RESTART_ON_EXIT[Restart.TRANSIENT, abnormal] is abnormal


@pytest.mark.parametrize("restart", list(Restart))
@pytest.mark.parametrize("kind", list(ExitKind))
def test_should_restart_every_combination(restart: Restart, kind: ExitKind) -> None:
    abnormal = kind in {ExitKind.CRASHED, ExitKind.KILLED}
    expected = {
        Restart.PERMANENT: True,
        Restart.TRANSIENT: abnormal,
        Restart.TEMPORARY: False,
    }[restart]
    assert should_restart(restart, Exit(kind)) is expected
    assert should_restart(restart, Exit(kind, RuntimeError("boom"))) is expected


def test_transient_restarts_only_after_crash_or_kill() -> None:
    assert should_restart(Restart.TRANSIENT, Exit(ExitKind.CRASHED, OSError("io")))
    assert should_restart(Restart.TRANSIENT, KILLED)
    assert not should_restart(Restart.TRANSIENT, NORMAL)
    assert not should_restart(Restart.TRANSIENT, SHUTDOWN)
    assert not should_restart(Restart.TRANSIENT, PASSIVATED)


# ---------------------------------------------------------------------------
# restart_group
# ---------------------------------------------------------------------------


def test_restart_group_examples() -> None:
    order = ["db", "cache", "pumps", "api"]
    assert restart_group(Strategy.ONE_FOR_ONE, order, "pumps") == ["pumps"]
    assert restart_group(Strategy.ONE_FOR_ALL, order, "pumps") == order
    assert restart_group(Strategy.REST_FOR_ONE, order, "pumps") == ["pumps", "api"]
    assert restart_group(Strategy.REST_FOR_ONE, order, "db") == order
    assert restart_group(Strategy.REST_FOR_ONE, order, "api") == ["api"]


def test_restart_group_returns_fresh_list() -> None:
    order = ["a", "b"]
    group = restart_group(Strategy.ONE_FOR_ALL, order, "a")
    assert group == order
    assert group is not order
    group.append("c")
    assert order == ["a", "b"]


def test_restart_group_accepts_tuple_order() -> None:
    order = ("a", "b", "c")
    assert restart_group(Strategy.REST_FOR_ONE, order, "b") == ["b", "c"]
    assert restart_group(Strategy.ONE_FOR_ALL, order, "b") == ["a", "b", "c"]


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_one_for_one_is_just_the_child(data: st.DataObject, order: list[str]) -> None:
    failed = data.draw(st.sampled_from(order))
    assert restart_group(Strategy.ONE_FOR_ONE, order, failed) == [failed]


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_one_for_all_is_everyone_in_order(
    data: st.DataObject, order: list[str]
) -> None:
    failed = data.draw(st.sampled_from(order))
    assert restart_group(Strategy.ONE_FOR_ALL, order, failed) == order


@PROPS
@given(data=st.data(), order=names)
def test_restart_group_rest_for_one_is_suffix_from_failed(
    data: st.DataObject, order: list[str]
) -> None:
    index = data.draw(st.integers(min_value=0, max_value=len(order) - 1))
    failed = order[index]
    group = restart_group(Strategy.REST_FOR_ONE, order, failed)
    assert group == order[index:]
    assert group[0] == failed
    # Nobody started before the failed child is touched.
    assert not set(group) & set(order[:index])


@PROPS
@given(data=st.data(), order=names, strategy=st.sampled_from(list(Strategy)))
def test_restart_group_is_ordered_subsequence_containing_failed(
    data: st.DataObject, order: list[str], strategy: Strategy
) -> None:
    failed = data.draw(st.sampled_from(order))
    group = restart_group(strategy, order, failed)
    assert failed in group
    positions = [order.index(name) for name in group]
    assert positions == sorted(set(positions))


def test_restart_group_rest_for_one_unknown_child_raises() -> None:
    with pytest.raises(ValueError):
        restart_group(Strategy.REST_FOR_ONE, ["a", "b"], "zzz")
