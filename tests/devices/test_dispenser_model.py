"""The pure dispenser model (devices/sim): state machine, commands, physics, faults, memory.

Plain pytest and hypothesis: the model is sans-IO and driven by explicit model time, so
nothing here needs trio. ``Host`` numbers command blocks the way a host does.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.gfd1.codec import (
    NozzleTotals,
    PointConfig,
    PointSettings,
    SaleRecord,
    StatusBlock,
    decode_config,
    decode_settings,
    decode_status,
    decode_totals,
    encode_config,
    encode_settings,
    encode_status,
    encode_totals,
)
from devices.gfd1.states import (
    Command,
    CommandResult,
    EndReason,
    ErrorCode,
    Flag,
    FPState,
    Mode,
    PresetType,
    SaleState,
)
from devices.sim import (
    Customer,
    Faults,
    FlowCurve,
    FuellingPoint,
    NozzleSpec,
    PointSpec,
    Sale,
    SimSettings,
    StationFile,
    amount_fen,
    random_customer,
    volume_for_amount,
)

OK = CommandResult.OK
BUSY = CommandResult.BUSY
ILLEGAL = CommandResult.ILLEGAL_STATE
BAD_ARG = CommandResult.BAD_ARG
FULL = CommandResult.BUFFER_FULL

PRICES = (789_000, 842_000, 771_000)  # milli-fen/L: 7.89, 8.42, 7.71 yuan/L
SPEC = PointSpec(
    tuple(NozzleSpec(g, p) for g, p in zip((92, 95, 10), PRICES, strict=True)), "GFD1-TEST-01"
)


def make_point(seed: int = 1, spec: PointSpec = SPEC, **config: Any) -> FuellingPoint:
    return FuellingPoint(spec, random.Random(seed), settings=SimSettings(**config))


class Host:
    """Sends command blocks with CMD_SEQ 1, 2, 3, ... like the PumpActor does."""

    def __init__(self, point: FuellingPoint) -> None:
        self.point = point
        self.seq = 0

    def __call__(self, code: int, **args: int) -> CommandResult:
        self.seq = self.seq % 0xFFFF + 1
        return self.point.command(self.seq, code, **args)

    def head(self) -> int:
        head = self.point.status().last_sale
        return head.seq if head else 0


def fuel(p: FuellingPoint, host: Host, nozzle: int = 1, seconds: float = 10.0, **auth: int) -> None:
    """Authorize, lift ``nozzle`` and let it flow for ``seconds``."""
    assert host(Command.AUTHORIZE, **auth) is OK
    p.lift_nozzle(nozzle)
    p.advance(p.now_s + seconds)
    assert state_of(p) is FPState.FUELLING


def complete(p: FuellingPoint, host: Host, nozzle: int = 1, seconds: float = 10.0) -> Sale:
    fuel(p, host, nozzle, seconds)
    p.hang_up(nozzle)
    assert state_of(p) is FPState.COMPLETED
    return p.buffer[-1]


def state_of(p: FuellingPoint) -> FPState:
    """``p.state``, read through a call so mypy does not narrow it across actions."""
    return p.state


def last(r: StatusBlock) -> SaleRecord:
    """The head of the payable buffer as the status block shows it (it must be there)."""
    assert r.last_sale is not None
    return r.last_sale


def volumes(p: FuellingPoint) -> tuple[int, ...]:
    return tuple(t.volume_ml for t in p.totals())


def amounts(p: FuellingPoint) -> tuple[int, ...]:
    return tuple(t.amount_fen for t in p.totals())


def check_sale(sale: Sale) -> None:
    assert sale.end_volume_total_ml - sale.start_volume_total_ml == sale.volume_ml
    assert sale.end_amount_total_fen - sale.start_amount_total_fen == sale.amount_fen
    assert sale.amount_fen == amount_fen(sale.volume_ml, sale.unit_price)


# -- each command in each state -----------------------------------------------------------


def _setup_calling(p: FuellingPoint, host: Host) -> None:
    p.lift_nozzle(1)


def _setup_authorized(p: FuellingPoint, host: Host) -> None:
    assert host(Command.AUTHORIZE, token=11) is OK


def _setup_fuelling(p: FuellingPoint, host: Host) -> None:
    fuel(p, host)


def _setup_suspended(p: FuellingPoint, host: Host) -> None:
    fuel(p, host)
    assert host(Command.SUSPEND) is OK


def _setup_completed(p: FuellingPoint, host: Host) -> None:
    complete(p, host)


def _setup_closed(p: FuellingPoint, host: Host) -> None:
    assert host(Command.CLOSE) is OK


def _setup_inoperative(p: FuellingPoint, host: Host) -> None:
    assert host(Command.EMERGENCY_STOP) is OK


SETUPS: dict[FPState, Callable[[FuellingPoint, Host], None]] = {
    FPState.IDLE: lambda p, host: None,
    FPState.CALLING: _setup_calling,
    FPState.AUTHORIZED: _setup_authorized,
    FPState.FUELLING: _setup_fuelling,
    FPState.SUSPENDED_FUELLING: _setup_suspended,
    FPState.COMPLETED: _setup_completed,
    FPState.CLOSED: _setup_closed,
    FPState.INOPERATIVE: _setup_inoperative,
}

# Result and state after, for each command in each state; "=" means the state is unchanged.
# LOCK_SALE and CLEAR_SALE name LAST_SALE_SEQ (0 when the buffer is empty). CLOSE in
# COMPLETED is deferred until the buffer is collected.
TABLE = """
code            IDLE     CALLING  AUTHORIZED FUELLING  SUSPENDED COMPLETED CLOSED   INOPERATIVE
AUTHORIZE       OK AUTH  OK AUTH  ILL =      ILL =     ILL =     OK AUTH   ILL =    ILL =
STOP            ILL =    ILL =    OK IDLE    OK COMP   OK COMP   ILL =     ILL =    ILL =
SUSPEND         ILL =    ILL =    ILL =      OK SUSP   OK =      ILL =     ILL =    ILL =
RESUME          ILL =    ILL =    ILL =      OK =      OK FUEL   ILL =     ILL =    ILL =
LOCK_SALE       BAD =    BAD =    BAD =      BAD =     BAD =     OK =      BAD =    BAD =
CLEAR_SALE      BAD =    BAD =    BAD =      BAD =     BAD =     OK IDLE   BAD =    BAD =
OPEN            OK =     OK =     OK =       OK =      OK =      OK =      OK IDLE  OK =
CLOSE           OK CLOS  OK CLOS  ILL =      ILL =     ILL =     OK =      OK =     ILL =
RESET_ERROR     OK =     OK =     OK =       OK =      OK =      OK =      OK =     OK IDLE
APPLY_PRICES    OK =     OK =     BUSY =     BUSY =    BUSY =    OK =      OK =     OK =
EMERGENCY_STOP  OK INOP  OK INOP  OK INOP    OK INOP   OK INOP   OK INOP   OK INOP  OK =
CANCEL_AUTH     ILL =    ILL =    OK IDLE    ILL =     ILL =     ILL =     ILL =    ILL =
99              UNK =    UNK =    UNK =      UNK =     UNK =     UNK =     UNK =    UNK =
"""
_RESULTS = {"OK": OK, "BUSY": BUSY, "ILL": ILLEGAL, "BAD": BAD_ARG}
_RESULTS["UNK"] = CommandResult.UNKNOWN_CMD
_STATES = {s.name[:4]: s for s in SETUPS}  # IDLE, CALL, AUTH, FUEL, SUSP, COMP, CLOS, INOP


def _cases() -> list[Any]:
    rows = [line.split() for line in TABLE.strip().splitlines()[1:]]
    cases = []
    for name, *cells in rows:
        code = Command[name] if name in Command.__members__ else int(name)
        for state, result, after in zip(SETUPS, cells[::2], cells[1::2], strict=True):
            expected = state if after == "=" else _STATES[after]
            case_id = f"{state.name}-{name}"
            cases.append(pytest.param(state, code, _RESULTS[result], expected, id=case_id))
    return cases


@pytest.mark.parametrize(("state", "code", "result", "after"), _cases())
def test_command_in_state(state: FPState, code: int, result: CommandResult, after: FPState) -> None:
    p = make_point()
    host = Host(p)
    SETUPS[state](p, host)
    assert state_of(p) is state
    head = host.head()
    assert host(code, sale_seq=head, token=5, price_set_id=9) is result
    assert state_of(p) is after
    r = p.status()
    assert (r.cmd_ack_seq, r.cmd_result, r.cmd_ack_code) == (host.seq, result, code)
    if state is FPState.CALLING and after is FPState.CLOSED:
        assert p.nozzles_out == 1  # the nozzle stays out; the point ignores it while closed


def test_a_resent_command_block_is_a_no_op() -> None:
    p = make_point()
    assert p.command(5, Command.AUTHORIZE, token=1234) is OK
    assert p.status().cur_sale_seq == 1
    # the same block again, and even another code under the same seq: nothing happens
    assert p.command(5, Command.AUTHORIZE, token=1234) is OK
    assert p.command(5, Command.STOP) is OK
    r = p.status()
    assert (r.fp_state, r.cur_sale_seq, r.cmd_ack_code, r.unpaid_count) == (
        FPState.AUTHORIZED,
        1,
        Command.AUTHORIZE,
        0,
    )
    assert p.command(6, Command.STOP) is OK
    assert state_of(p) is FPState.IDLE and p.status().unpaid_count == 1
    # a refusal is recorded and replayed too
    assert p.command(7, Command.STOP) is ILLEGAL
    assert p.command(7, Command.STOP) is ILLEGAL
    assert p.status().cmd_ack_seq == 7


def test_acknowledgement_is_lost_in_a_power_cycle() -> None:
    p = make_point()
    assert p.command(1, Command.AUTHORIZE) is OK
    p.power_cycle()
    assert p.status().cmd_ack_seq == 0
    # the host's resend now executes again: that is why BOOT_COUNT exists
    assert p.command(1, Command.AUTHORIZE) is OK
    assert p.status().cur_sale_seq == 2


def test_busy_fault_answers_the_next_k_commands() -> None:
    p = make_point()
    p.faults.busy_commands = 2
    assert p.command(1, Command.AUTHORIZE) is BUSY
    assert p.command(1, Command.AUTHORIZE) is BUSY  # resend: replayed, not counted
    assert p.command(2, Command.AUTHORIZE) is BUSY
    assert state_of(p) is FPState.IDLE
    assert p.status().cmd_result is BUSY
    assert p.command(3, Command.AUTHORIZE) is OK
    assert state_of(p) is FPState.AUTHORIZED and p.faults.busy_commands == 0


def test_unknown_command_code() -> None:
    p = make_point()
    assert p.command(1, 0) is CommandResult.UNKNOWN_CMD
    assert p.command(2, 13) is CommandResult.UNKNOWN_CMD
    assert p.status().cmd_ack_code == 13


def test_command_words_out_of_register_range_raise() -> None:
    p = make_point()
    with pytest.raises(ValueError):
        p.command(0x10000, Command.STOP)
    with pytest.raises(ValueError):
        p.command(1, Command.AUTHORIZE, token=1 << 32)


@pytest.mark.parametrize(
    ("args", "setup"),
    [
        ({"nozzle_mask": 0b1000}, None),  # no nozzle 4 on this point
        ({"preset_type": 3, "preset_value": 10}, None),
        ({"preset_type": PresetType.VOLUME}, None),  # a preset without a value
        ({"preset_value": 10_000}, None),  # a value without a preset
        ({"nozzle_mask": 0b010}, 1),  # CALLING on nozzle 1, authorizing nozzle 2 only
    ],
)
def test_authorize_refuses_bad_arguments(args: dict[str, int], setup: int | None) -> None:
    p = make_point()
    if setup:
        p.lift_nozzle(setup)
    state = p.state
    assert p.command(1, Command.AUTHORIZE, **args) is BAD_ARG
    assert state_of(p) is state and p.status().cur_sale_seq == 0


def test_authorization_is_limited_to_the_nozzle_mask() -> None:
    p = make_point()
    host = Host(p)
    assert host(Command.AUTHORIZE, nozzle_mask=0b010, token=3) is OK
    p.lift_nozzle(1)
    p.advance(5)
    assert state_of(p) is FPState.AUTHORIZED and p.status().flow_rate_ml_min == 0
    p.lift_nozzle(2)
    p.advance(10)
    r = p.status()
    assert r.fp_state is FPState.FUELLING and r.active_nozzle == 2
    assert r.nozzle_out_mask == 0b011
    assert volumes(p)[0] == 0 and volumes(p)[1] > 0
    p.hang_up(1)
    assert state_of(p) is FPState.FUELLING
    p.hang_up(2)
    assert p.buffer[0].nozzle == 2 and p.buffer[0].end_reason is EndReason.NOZZLE_HUNG_UP


# -- physics --------------------------------------------------------------------------------


@pytest.mark.parametrize("volume", [1, 999, 10_000, 45_678])
def test_volume_preset_stops_exactly(volume: int) -> None:
    p = make_point()
    host = Host(p)
    assert host(Command.AUTHORIZE, preset_type=PresetType.VOLUME, preset_value=volume) is OK
    assert Flag.PRESET_ACTIVE in p.status().flags
    p.lift_nozzle(2)
    p.advance(1000)
    r = p.status()
    assert r.fp_state is FPState.COMPLETED and r.flow_rate_ml_min == 0
    assert r.cur_volume_ml == last(r).volume_ml == volume
    assert last(r).end_reason is EndReason.PRESET_REACHED
    assert last(r).amount_fen == amount_fen(volume, PRICES[1])
    assert volumes(p) == (0, volume, 0)
    assert last(r).preset_type is PresetType.VOLUME and last(r).preset_value == volume
    assert Flag.PRESET_ACTIVE not in r.flags


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 100_000), st.integers(1_000, 3_000_000))
def test_amount_preset_stops_exactly(amount: int, price: int) -> None:
    p = make_point(spec=PointSpec((NozzleSpec(92, price),), ramp_ms=0))
    host = Host(p)
    assert host(Command.AUTHORIZE, preset_type=PresetType.AMOUNT, preset_value=amount) is OK
    p.lift_nozzle(1)
    p.advance(1_000_000)
    sale = p.buffer[0]
    assert sale.end_reason is EndReason.PRESET_REACHED
    assert sale.volume_ml == volume_for_amount(amount, price)
    assert sale.amount_fen <= amount < amount_fen(sale.volume_ml + 1, price)
    if price <= 1_000_000:  # at most 10 yuan/L: every fen is reachable
        assert sale.amount_fen == amount
    check_sale(sale)


@pytest.mark.parametrize("seed", range(8))
def test_flow_ramps_to_half_a_litre_to_0_7_per_second(seed: int) -> None:
    p = make_point(seed)
    host = Host(p)
    assert host(Command.AUTHORIZE) is OK
    p.lift_nozzle(1)
    p.advance(0.5)  # the customer squeezes 0.5 s after lifting an authorized nozzle
    assert state_of(p) is FPState.FUELLING
    rates = []
    for t in (0.6, 1.0, 1.5, 2.0, 10.0):
        p.advance(t)
        rates.append(p.status().flow_rate_ml_min)
    assert rates == sorted(rates) and rates[0] < rates[-1]
    assert 30_000 <= rates[-1] <= 42_000  # 0.5 .. 0.7 L/s
    assert rates[-2] == rates[-1]  # the 1.5 s ramp is over
    volume = p.status().cur_volume_ml
    assert 500 * 8.75 <= volume <= 700 * 8.75  # 9.5 s of flow, 0.75 s of it lost to the ramp


def test_live_amount_and_totals_follow_the_volume() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host, nozzle=3, seconds=1.0)
    for step in range(1, 200):
        p.advance(1.0 + step * 0.137)
        r = p.status()
        assert r.cur_unit_price == PRICES[2]
        assert r.cur_amount_fen == amount_fen(r.cur_volume_ml, PRICES[2])
        assert volumes(p)[2] == r.cur_volume_ml
        assert amounts(p)[2] == r.cur_amount_fen


def test_suspend_freezes_the_sale_and_resume_ramps_again() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host)
    assert host(Command.SUSPEND) is OK
    frozen = p.status()
    assert Flag.SUSPENDED in frozen.flags and Flag.FLOW not in frozen.flags
    p.advance(p.now_s + 60)
    assert p.status().cur_volume_ml == frozen.cur_volume_ml
    assert p.status().flow_rate_ml_min == 0
    assert host(Command.RESUME) is OK
    p.advance(p.now_s + 0.75)
    assert 0 < p.status().flow_rate_ml_min < 30_000  # ramping up again
    p.advance(p.now_s + 5)
    assert p.status().cur_volume_ml > frozen.cur_volume_ml
    p.hang_up()
    check_sale(p.buffer[0])


def test_heartbeat_counts_model_seconds_and_restarts_at_boot() -> None:
    p = make_point()
    assert p.status().heartbeat == 0
    p.advance(2.999)
    assert p.status().heartbeat == 2
    p.advance(65_536 + 3.5)
    assert p.status().heartbeat == 3  # 16-bit register wraps
    p.power_cycle()
    p.advance(p.now_s + 1.0)
    assert p.status().heartbeat == 1


def test_time_never_goes_back() -> None:
    p = make_point()
    p.advance(10)
    with pytest.raises(ValueError):
        p.advance(9.9)


def test_runs_are_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[tuple[StatusBlock, tuple[NozzleTotals, ...]]]:
        p = make_point(seed)
        host = Host(p)
        fuel(p, host, seconds=7.3)
        out = [(p.status(), p.totals())]
        p.hang_up()
        p.advance(20)
        out.append((p.status(), p.totals()))
        return out

    assert run(3) == run(3)
    assert {last(run(s)[1][0]).volume_ml for s in range(6)} != {last(run(0)[1][0]).volume_ml}


# -- the sale lifecycle and the payable buffer ----------------------------------------------


def test_zero_sale_on_auth_timeout() -> None:
    p = make_point(auth_timeout_s=30)
    host = Host(p)
    assert host(Command.AUTHORIZE, token=909) is OK
    p.advance(29.999)
    assert state_of(p) is FPState.AUTHORIZED
    p.advance(30)
    r = p.status()
    assert r.fp_state is FPState.IDLE and r.unpaid_count == 1
    sale = last(r)
    assert sale.end_reason is EndReason.NO_FLOW_TIMEOUT
    assert (sale.volume_ml, sale.amount_fen, sale.auth_token) == (0, 0, 909)
    assert sale.start_volume_total_ml == sale.end_volume_total_ml
    assert host(Command.CLEAR_SALE, sale_seq=sale.seq) is OK
    assert p.status().unpaid_count == 0


def test_auth_timeout_with_only_an_unauthorized_nozzle_out_returns_to_calling() -> None:
    p = make_point(auth_timeout_s=10)
    host = Host(p)
    assert host(Command.AUTHORIZE, nozzle_mask=0b100) is OK
    p.lift_nozzle(1)
    p.advance(10)
    assert state_of(p) is FPState.CALLING
    assert p.buffer[0].nozzle == 3  # no authorized nozzle was lifted: the lowest allowed


def test_cancel_auth_and_stop_before_flow_are_zero_sales() -> None:
    p = make_point()
    host = Host(p)
    assert host(Command.AUTHORIZE, token=1) is OK
    p.lift_nozzle(2)
    assert host(Command.CANCEL_AUTH) is OK  # before the customer squeezes
    assert state_of(p) is FPState.CALLING
    assert host(Command.AUTHORIZE, token=2) is OK
    p.hang_up()
    assert host(Command.STOP) is OK
    assert state_of(p) is FPState.IDLE
    assert [(s.seq, s.volume_ml, s.end_reason, s.nozzle) for s in p.buffer] == [
        (1, 0, EndReason.HOST_STOP, 2),
        (2, 0, EndReason.HOST_STOP, 1),
    ]


def test_buffer_is_a_fifo_and_lock_clear_must_name_its_head() -> None:
    p = make_point(max_unpaid=0)
    host = Host(p)
    sales = [complete(p, host, nozzle=n, seconds=3.0 + n) for n in (1, 2, 1)]
    assert [s.seq for s in sales] == [1, 2, 3]
    r = p.status()
    assert r.unpaid_count == 3 and last(r).seq == 1
    assert last(r).state is SaleState.PAYABLE
    assert host(Command.LOCK_SALE, sale_seq=2) is BAD_ARG
    assert host(Command.CLEAR_SALE, sale_seq=3) is BAD_ARG
    assert host(Command.LOCK_SALE, sale_seq=1) is OK
    assert last(p.status()).state is SaleState.LOCKED
    assert host(Command.CLEAR_SALE, sale_seq=1) is OK
    assert state_of(p) is FPState.COMPLETED  # two more to collect
    r = p.status()
    assert (last(r).seq, last(r).nozzle, last(r).volume_ml) == (
        2,
        2,
        sales[1].volume_ml,
    )
    assert host(Command.CLEAR_SALE, sale_seq=2) is OK
    assert host(Command.CLEAR_SALE, sale_seq=3) is OK
    assert state_of(p) is FPState.IDLE
    r = p.status()
    assert r.last_sale is None
    assert encode_status(r)[32:57] == [0] * 25  # LAST_SALE_* read as zeros


def test_totals_chain_from_sale_to_sale_per_nozzle() -> None:
    p = make_point(max_unpaid=0)
    host = Host(p)
    sales = [complete(p, host, nozzle=n, seconds=2.0 + n) for n in (1, 2, 1, 1, 2)]
    for sale in sales:
        check_sale(sale)
    for nozzle in (1, 2):
        mine = [s for s in sales if s.nozzle == nozzle]
        assert mine[0].start_volume_total_ml == 0
        for prev, nxt in itertools.pairwise(mine):
            assert nxt.start_volume_total_ml == prev.end_volume_total_ml
            assert nxt.start_amount_total_fen == prev.end_amount_total_fen
        assert p.volume_totals[nozzle - 1] == mine[-1].end_volume_total_ml


def test_cur_sale_seq_increments_when_a_sale_starts() -> None:
    p = make_point()
    host = Host(p)
    assert p.status().cur_sale_seq == 0
    assert host(Command.AUTHORIZE, token=77) is OK
    r = p.status()
    assert (r.cur_sale_seq, r.cur_auth_token, r.cur_volume_ml) == (1, 77, 0)
    p.lift_nozzle(1)
    p.advance(8)
    p.hang_up()
    r = p.status()
    assert r.cur_sale_seq == 1 and r.cur_volume_ml == last(r).volume_ml > 0
    assert host(Command.AUTHORIZE, token=78) is OK
    assert p.status().cur_sale_seq == 2 and p.status().cur_volume_ml == 0


def test_buffer_full_refuses_authorize() -> None:
    p = make_point(max_unpaid=2)
    host = Host(p)
    complete(p, host)
    complete(p, host, nozzle=2)
    r = p.status()
    assert Flag.UNPAID_BUFFER_FULL in r.flags
    assert host(Command.AUTHORIZE) is FULL
    assert state_of(p) is FPState.COMPLETED and p.status().cur_sale_seq == 2
    assert host(Command.CLEAR_SALE, sale_seq=1) is OK
    assert Flag.UNPAID_BUFFER_FULL not in p.status().flags
    assert host(Command.AUTHORIZE) is OK


def test_close_waits_for_the_buffer_to_be_collected() -> None:
    p = make_point()
    host = Host(p)
    complete(p, host)
    assert host(Command.CLOSE) is OK
    assert (state_of(p), p.close_pending) == (FPState.COMPLETED, True)
    assert host(Command.AUTHORIZE) is ILLEGAL  # no new sale while closing
    p.lift_nozzle(1)
    assert state_of(p) is FPState.CALLING
    assert host(Command.CLEAR_SALE, sale_seq=1) is OK
    assert state_of(p) is FPState.CLOSED and p.closed and not p.close_pending
    p.hang_up()
    assert state_of(p) is FPState.CLOSED
    assert host(Command.OPEN) is OK
    assert state_of(p) is FPState.IDLE


def test_open_cancels_a_pending_close() -> None:
    p = make_point()
    host = Host(p)
    assert host(Command.AUTHORIZE) is OK
    assert host(Command.CANCEL_AUTH) is OK  # a zero sale waits in the buffer
    assert host(Command.CLOSE) is OK
    assert state_of(p) is FPState.IDLE and p.close_pending
    assert host(Command.OPEN) is OK
    assert host(Command.CLEAR_SALE, sale_seq=1) is OK
    assert state_of(p) is FPState.IDLE and not p.closed


def test_price_change_refused_while_fuelling_then_applied() -> None:
    p = make_point()
    host = Host(p)
    p.stage_price(1, 805_000)
    r = p.status()
    assert Flag.PRICE_CHANGE_PENDING in r.flags and p.staged_prices[0] == 805_000
    assert host(Command.AUTHORIZE) is OK
    assert host(Command.APPLY_PRICES, price_set_id=2) is BUSY
    p.lift_nozzle(1)
    p.advance(10)
    assert host(Command.APPLY_PRICES, price_set_id=2) is BUSY
    p.hang_up()
    old = p.buffer[0]
    assert (old.unit_price, old.price_set_id) == (PRICES[0], 1)
    check_sale(old)
    assert host(Command.APPLY_PRICES, price_set_id=2) is OK
    r = p.status()
    assert r.price_set_id == 2 and Flag.PRICE_CHANGE_PENDING not in r.flags
    assert p.applied_prices == (805_000, *PRICES[1:])
    new = complete(p, host)
    assert (new.unit_price, new.price_set_id) == (805_000, 2)
    assert new.start_amount_total_fen == old.end_amount_total_fen
    check_sale(new)


def test_apply_prices_by_mask_and_refuses_a_zero_price() -> None:
    p = make_point()
    host = Host(p)
    p.stage_price(2, 0)
    assert host(Command.APPLY_PRICES, price_set_id=5) is BAD_ARG
    assert host(Command.APPLY_PRICES, nozzle_mask=0b1000, price_set_id=5) is BAD_ARG
    p.stage_price(3, 700_000)
    assert host(Command.APPLY_PRICES, nozzle_mask=0b100, price_set_id=5) is OK
    assert p.applied_prices == (PRICES[0], PRICES[1], 700_000)
    assert p.status().price_set_id == 5
    with pytest.raises(ValueError):
        p.stage_price(4, 1)


# -- power -----------------------------------------------------------------------------------


def test_power_cycle_completes_the_sale_in_progress() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host, seconds=12, token=4242)
    dispensed = p.status().cur_volume_ml
    sale = p.power_cycle(lose_in_progress=False)
    assert sale is not None and sale.state is SaleState.PAYABLE
    r = p.status()
    assert r.boot_count == 2 and r.heartbeat == 0 and r.cmd_ack_seq == 0
    assert r.fp_state is FPState.COMPLETED  # the customer still holds the nozzle
    assert (r.cur_volume_ml, r.cur_auth_token, r.flow_rate_ml_min) == (0, 0, 0)
    assert last(r).end_reason is EndReason.POWER_LOSS
    assert last(r).volume_ml == dispensed and last(r).auth_token == 4242
    assert volumes(p)[0] == dispensed
    check_sale(p.buffer[0])
    p.advance(p.now_s + 30)
    assert volumes(p)[0] == dispensed  # no flow after power-up


def test_power_cycle_can_lose_the_sale_but_not_the_totals() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host, seconds=12, token=4242)
    dispensed = p.status().cur_volume_ml
    lost = p.power_cycle(lose_in_progress=True)
    assert lost is not None and lost.state is SaleState.NONE
    assert lost.volume_ml == dispensed and lost.end_reason is EndReason.POWER_LOSS
    r = p.status()
    assert r.boot_count == 2 and r.unpaid_count == 0 and r.last_sale is None
    assert r.fp_state is FPState.CALLING  # the nozzle is still out, nothing remembers the sale
    assert volumes(p)[0] == dispensed  # what the switch reconstructs from
    assert r.cur_sale_seq == 1
    assert p.drain_ended() == [lost]
    p.hang_up()
    nxt = complete(p, host)
    assert nxt.seq == 2 and nxt.start_volume_total_ml == lost.end_volume_total_ml == dispensed


@pytest.mark.parametrize("lose", [False, True])
def test_power_cycle_while_authorized(lose: bool) -> None:
    p = make_point()
    host = Host(p)
    assert host(Command.AUTHORIZE, token=8) is OK
    sale = p.power_cycle(lose)
    assert sale is not None and sale.volume_ml == 0
    # a point powers up COMPLETED when its buffer holds sales to collect
    assert state_of(p) is (FPState.IDLE if lose else FPState.COMPLETED)
    assert p.status().unpaid_count == (0 if lose else 1)


def test_power_cycle_when_idle_keeps_buffer_and_settings() -> None:
    p = make_point(max_unpaid=5, auth_timeout_s=33)
    host = Host(p)
    complete(p, host)
    p.hang_up()
    assert host(Command.CLOSE) is OK
    assert p.power_cycle() is None
    assert state_of(p) is FPState.COMPLETED and p.close_pending and p.boot_count == 2
    assert (p.settings.max_unpaid, p.settings.auth_timeout_s) == (5, 33)


# -- faults -----------------------------------------------------------------------------------


def test_stuck_flow_runs_past_hang_up_until_stop() -> None:
    p = make_point()
    host = Host(p)
    p.faults.stuck_flow = True
    fuel(p, host)
    at_hang_up = p.status().cur_volume_ml
    p.hang_up()
    p.advance(p.now_s + 10)
    r = p.status()
    assert r.fp_state is FPState.FUELLING and r.nozzle_out_mask == 0
    assert r.cur_volume_ml > at_hang_up + 4_000
    assert host(Command.STOP) is OK
    sale = p.buffer[0]
    assert sale.end_reason is EndReason.HOST_STOP and sale.volume_ml == r.cur_volume_ml
    check_sale(sale)


def test_stuck_flow_cleared_ends_the_sale_as_hung_up() -> None:
    p = make_point()
    host = Host(p)
    p.faults.stuck_flow = True
    fuel(p, host)
    p.hang_up()
    p.advance(p.now_s + 2)
    p.faults.stuck_flow = False
    p.advance(p.now_s)
    assert p.buffer[0].end_reason is EndReason.NOZZLE_HUNG_UP


def test_pulser_error_mid_sale() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host)
    p.inject_pulser_error()
    r = p.status()
    assert r.fp_state is FPState.INOPERATIVE and r.error_code is ErrorCode.PULSER
    assert Flag.ERROR in r.flags and Flag.TOTALS_VALID not in r.flags
    assert last(r).end_reason is EndReason.ERROR and last(r).volume_ml > 0
    assert host(Command.AUTHORIZE) is ILLEGAL
    assert host(Command.RESET_ERROR) is OK
    r = p.status()
    assert r.error_code is ErrorCode.NONE and Flag.TOTALS_VALID in r.flags
    assert r.fp_state is FPState.COMPLETED  # the sale it ended waits to be collected
    assert host(Command.CLEAR_SALE, sale_seq=1) is OK
    assert state_of(p) is FPState.CALLING


def test_pulser_error_at_a_volume_fires_once() -> None:
    p = make_point()
    host = Host(p)
    p.faults.pulser_error_at_ml = 3_210
    assert host(Command.AUTHORIZE) is OK
    p.lift_nozzle(1)
    p.advance(60)
    assert state_of(p) is FPState.INOPERATIVE and p.buffer[0].volume_ml == 3_210
    assert p.faults.pulser_error_at_ml is None


@pytest.mark.parametrize("lose", [False, True])
def test_power_loss_mid_sale_at_a_volume(lose: bool) -> None:
    p = make_point()
    host = Host(p)
    p.faults.power_loss_at_ml = 5_000
    p.faults.power_loss_loses_sale = lose
    assert host(Command.AUTHORIZE, token=31) is OK
    p.lift_nozzle(1)
    p.advance(60)
    assert (p.boot_count, p.volume_totals[0]) == (2, 5_000)
    assert p.faults == Faults(power_loss_loses_sale=lose)  # the one-shot fault is spent
    (ended,) = p.drain_ended()
    assert ended.volume_ml == 5_000 and ended.end_reason is EndReason.POWER_LOSS
    if lose:
        assert ended.state is SaleState.NONE and p.buffer == ()
        assert state_of(p) is FPState.CALLING
    else:
        assert p.buffer == (ended,) and state_of(p) is FPState.COMPLETED


def test_emergency_stop_ends_the_sale_until_reset() -> None:
    p = make_point()
    host = Host(p)
    fuel(p, host)
    assert host(Command.EMERGENCY_STOP) is OK
    r = p.status()
    assert r.fp_state is FPState.INOPERATIVE and r.error_code is ErrorCode.EMERGENCY_STOP
    assert last(r).end_reason is EndReason.HOST_STOP
    volume = r.cur_volume_ml
    p.advance(p.now_s + 10)
    assert p.status().cur_volume_ml == volume
    assert host(Command.RESET_ERROR) is OK
    assert state_of(p) is FPState.COMPLETED


def test_host_watchdog_cancels_an_unused_authorization() -> None:
    p = make_point(host_watchdog_s=10, auth_timeout_s=0)
    host = Host(p)
    assert host(Command.AUTHORIZE, token=6) is OK
    for t in range(3, 30, 3):  # polling keeps it alive
        p.advance(t)
        p.host_activity()
    assert state_of(p) is FPState.AUTHORIZED
    p.advance(36.999)
    assert state_of(p) is FPState.AUTHORIZED
    p.advance(37)  # 10 s of silence
    r = p.status()
    assert r.fp_state is FPState.IDLE and r.error_code is ErrorCode.HOST_WATCHDOG
    assert last(r).end_reason is EndReason.ERROR and last(r).volume_ml == 0
    assert host(Command.RESET_ERROR) is OK
    assert p.status().error_code is ErrorCode.NONE


def test_host_watchdog_lets_fuelling_finish() -> None:
    p = make_point(host_watchdog_s=5)
    host = Host(p)
    fuel(p, host, seconds=2)
    p.advance(60)
    r = p.status()
    assert r.fp_state is FPState.FUELLING and r.error_code is ErrorCode.HOST_WATCHDOG
    p.hang_up()
    assert p.buffer[0].end_reason is EndReason.NOZZLE_HUNG_UP


def test_host_watchdog_is_off_in_stand_alone_mode() -> None:
    p = make_point(host_watchdog_s=5, mode=Mode.STAND_ALONE)
    p.advance(100)
    assert p.error_code is ErrorCode.NONE


def test_transport_faults_are_for_the_server() -> None:
    rng = random.Random(0)
    quiet = Faults()
    assert (
        not quiet.drop_reply(rng) and quiet.reply_delay_s(rng) == 0 and not quiet.corrupt_crc(rng)
    )
    assert rng.random() == random.Random(0).random()  # no draw while unarmed
    loud = Faults(
        drop_reply_probability=1.0,
        delay_reply_probability=1.0,
        delay_reply_s=0.25,
        crc_error_probability=1.0,
    )
    assert loud.drop_reply(rng) and loud.reply_delay_s(rng) == 0.25 and loud.corrupt_crc(rng)
    with pytest.raises(ValueError):
        Faults(drop_reply_probability=1.5)


# -- customers and modes ---------------------------------------------------------------------


def test_scripted_customer_hangs_up_after_a_volume() -> None:
    p = make_point()
    host = Host(p)
    p.add_customer(Customer(2, lift_at_s=3.0, hang_up_after_ml=12_345))
    p.advance(2.9)
    assert state_of(p) is FPState.IDLE
    p.advance(3.0)
    assert state_of(p) is FPState.CALLING and p.status().active_nozzle == 2
    assert host(Command.AUTHORIZE, token=1) is OK
    p.advance(200)
    sale = p.buffer[0]
    assert (sale.nozzle, sale.volume_ml, sale.end_reason) == (2, 12_345, EndReason.NOZZLE_HUNG_UP)
    assert p.nozzles_out == 0 and state_of(p) is FPState.COMPLETED


def test_scripted_customer_hangs_up_after_a_duration() -> None:
    p = make_point(seed=4)
    host = Host(p)
    assert host(Command.AUTHORIZE) is OK
    p.add_customer(Customer(1, lift_at_s=1.0, hang_up_after_s=20.0))
    p.advance(100)
    sale = p.buffer[0]
    assert sale.end_reason is EndReason.NOZZLE_HUNG_UP
    flow_s = 20.0 - 0.5 - 0.75  # squeeze delay, ramp
    assert 500 * flow_s - 1 <= sale.volume_ml <= 700 * flow_s + 1


def test_scripted_customer_leaves_when_the_preset_is_reached() -> None:
    p = make_point()
    host = Host(p)
    p.add_customer(Customer(1))
    p.add_customer(Customer(3, lift_at_s=5.0, hang_up_after_ml=1_000))
    assert host(Command.AUTHORIZE, preset_type=PresetType.VOLUME, preset_value=2_000) is OK
    p.advance(30)
    assert p.buffer[0].volume_ml == 2_000
    # the first customer hung up at the preset; the second one lifted nozzle 3 and waits
    assert state_of(p) is FPState.CALLING and p.nozzles_out == 0b100
    assert host(Command.AUTHORIZE) is OK
    p.advance(60)
    assert [(s.nozzle, s.volume_ml) for s in p.buffer] == [(1, 2_000), (3, 1_000)]
    assert p.nozzles_out == 0


def test_random_customers_are_reproducible() -> None:
    a = [random_customer(random.Random(9), 3, at_s=i) for i in range(5)]
    b = [random_customer(random.Random(9), 3, at_s=i) for i in range(5)]
    assert a == b and all(1 <= c.nozzle <= 3 for c in a)


def test_stand_alone_mode_self_authorizes_and_buffers() -> None:
    p = make_point(mode=Mode.STAND_ALONE, max_unpaid=2)
    assert Flag.STAND_ALONE in p.status().flags
    for expected_seq in (1, 2):
        p.lift_nozzle(1)
        assert state_of(p) is FPState.CALLING
        p.advance(p.now_s + 8)
        r = p.status()
        assert r.fp_state is FPState.FUELLING and r.cur_auth_token == 0
        assert r.cur_sale_seq == expected_seq
        p.hang_up()
    p.lift_nozzle(2)  # the buffer is full: the pump does not start
    p.advance(p.now_s + 8)
    assert state_of(p) is FPState.CALLING
    p.hang_up()
    assert state_of(p) is FPState.IDLE
    assert [s.auth_token for s in p.buffer] == [0, 0]


def test_configure_validates_settings() -> None:
    p = make_point()
    p.configure(max_unpaid=7, mode=1)
    assert p.settings_block() == PointSettings(0, 7, 120, Mode.STAND_ALONE)
    with pytest.raises(ValueError):
        p.configure(mode=5)
    with pytest.raises(ValueError):
        p.configure(auth_timeout_s=70_000)


def test_nozzle_numbers_are_checked() -> None:
    p = make_point()
    with pytest.raises(ValueError):
        p.lift_nozzle(4)
    with pytest.raises(ValueError):
        p.add_customer(Customer(0))


# -- registers and persistence ------------------------------------------------------------


def test_register_values_are_the_codecs_own() -> None:
    p = make_point()
    r = p.status()
    assert (r.map_version, p.config()) == (1, PointConfig(3, (92, 95, 10), "GFD1-TEST-01"))
    assert r.flags == Flag.TOTALS_VALID and r.fp_state is FPState.IDLE and r.boot_count == 1
    assert p.settings_block() == PointSettings() and p.staged_prices == PRICES


def test_register_values_round_trip_through_the_codec() -> None:
    p = _busy_point()
    r = p.status()
    assert r.last_sale is not None and r.fp_state is FPState.FUELLING
    assert decode_status(encode_status(r)) == r
    assert decode_totals(encode_totals(p.totals()), 3) == p.totals()
    assert decode_config(encode_config(p.config())) == p.config()
    assert decode_settings(encode_settings(p.settings_block())) == p.settings_block()


def _busy_point() -> FuellingPoint:
    p = make_point(max_unpaid=0, auth_timeout_s=45)
    host = Host(p)
    complete(p, host, seconds=4)
    complete(p, host, nozzle=2, seconds=6)
    assert host(Command.LOCK_SALE, sale_seq=1) is OK
    p.stage_price(3, 799_000)
    fuel(p, host, nozzle=3, seconds=5)  # in progress: RAM only
    return p


def test_to_dict_round_trips_through_json() -> None:
    p = _busy_point()
    data = orjson.loads(orjson.dumps(p.to_dict()))
    restored = FuellingPoint.from_dict(data, random.Random(2), power_up=False)
    assert restored.to_dict() == p.to_dict()
    assert restored.buffer == p.buffer and restored.buffer[0].state is SaleState.LOCKED
    assert restored.settings == p.settings


def test_restoring_is_a_power_up_that_loses_the_sale_in_progress() -> None:
    p = _busy_point()
    restored = FuellingPoint.from_dict(p.to_dict(), random.Random(2), now_s=1000.0)
    r = restored.status()
    assert r.boot_count == 2 and r.fp_state is FPState.COMPLETED and r.unpaid_count == 2
    assert volumes(restored) == p.volume_totals  # the lost sale's flow is in there
    assert volumes(restored)[2] > 0 and r.cur_sale_seq == 3
    assert restored.staged_prices[2] == 799_000 and Flag.PRICE_CHANGE_PENDING in r.flags


def test_from_dict_rejects_garbage() -> None:
    good = make_point().to_dict()
    for broken in (
        {**good, "format": 2},
        {**good, "volume_totals_ml": [0, -1, 0]},
        {**good, "volume_totals_ml": [0, 0]},
        {**good, "buffer": [{"seq": 1}]},
        {**good, "closed": 1},
        {**good, "applied_prices": [0, 1, 1]},
        {k: v for k, v in good.items() if k != "spec"},
    ):
        with pytest.raises(ValueError):
            FuellingPoint.from_dict(broken, random.Random(0))


def test_station_file_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "station.json"
    sf = StationFile(path)
    assert sf.read() == {}
    points = {(0, 1): _busy_point(), (0, 2): make_point(7), (3, 1): make_point(8)}
    sf.write(points)
    points[0, 2].power_cycle()
    sf.write(points)  # replaces the first version
    assert sorted(os.listdir(tmp_path)) == ["station.json"]
    saved = sf.read()
    assert set(saved) == {(0, 1), (0, 2), (3, 1)}
    restored = {k: FuellingPoint.from_dict(d, random.Random(k[1])) for k, d in saved.items()}
    assert restored[0, 1].buffer == points[0, 1].buffer
    assert restored[0, 2].boot_count == 3
    for broken in (
        "{not json",
        '{"format": 1, "points": {}}',
        '{"format": 2, "stations": {"x": {}}}',
        '{"format": 2, "stations": {"0": {"256": {}}}}',
    ):
        path.write_text(broken)
        with pytest.raises(ValueError):
            sf.read()


# -- properties -------------------------------------------------------------------------------


@given(st.integers(0, 10**9), st.integers(1, 10**8))
def test_amount_is_volume_times_price_rounded_half_up(volume: int, price: int) -> None:
    assert amount_fen(volume, price) == math.floor(Fraction(volume * price, 10**6) + Fraction(1, 2))
    v = volume_for_amount(volume // 1000, price)
    assert amount_fen(v, price) <= volume // 1000 < amount_fen(v + 1, price)


def test_amount_rounding_examples() -> None:
    assert amount_fen(1_000, 789_000) == 789  # one litre at 7.89 yuan
    assert amount_fen(500, 1_000) == 1  # 0.5 fen rounds up
    assert amount_fen(499, 1_000) == 0
    assert amount_fen(38_462, 780_000) == 30_000  # 30000.36 fen


@given(st.integers(1, 2_000), st.integers(0, 5_000), st.integers(1, 200_000))
def test_flow_curve_reaches_each_volume_at_the_first_possible_millisecond(
    rate: int, ramp: int, volume: int
) -> None:
    curve = FlowCurve(rate, ramp)
    t = curve.elapsed_for(volume)
    assert curve.volume_ml(t) >= volume > curve.volume_ml(t - 1)


_NOZZLE = st.integers(1, 3)
_PRESETS = st.sampled_from([(0, 0), (1, 3_000), (1, 25_000), (2, 2_000), (2, 15_000)])


def _cmd(
    codes: st.SearchStrategy[int], names_head: st.SearchStrategy[bool] | None = None
) -> st.SearchStrategy[tuple[Any, ...]]:
    heads = st.booleans() if names_head is None else names_head
    return st.tuples(st.just("cmd"), codes, st.integers(0, 7), _PRESETS, heads)


_WEIGHTED: tuple[tuple[int, st.SearchStrategy[tuple[Any, ...]]], ...] = (
    # weighted towards what makes sales: authorize, lift, wait, collect, reset
    (3, st.tuples(st.just("lift"), _NOZZLE)),
    (6, st.tuples(st.just("fill"), _NOZZLE, _PRESETS, st.integers(0, 60_000), st.booleans())),
    (2, st.tuples(st.just("hang"), st.integers(0, 3))),
    (4, st.tuples(st.just("wait"), st.integers(0, 40_000))),
    (3, _cmd(st.just(Command.AUTHORIZE))),
    (1, _cmd(st.just(Command.CLEAR_SALE), st.just(True))),
    (1, _cmd(st.just(Command.RESET_ERROR))),
    (2, _cmd(st.sampled_from([*Command, 0]))),
    (1, st.tuples(st.just("resend"))),
    (1, st.tuples(st.just("power"), st.booleans())),
    (1, st.tuples(st.just("stuck"), st.booleans())),
    (1, st.tuples(st.just("pulser"))),
    (1, st.tuples(st.just("busy"), st.integers(0, 2))),
    (1, st.tuples(st.just("price"), _NOZZLE, st.integers(0, 1_000_000))),
    (1, st.tuples(st.just("customer"), _NOZZLE, st.integers(0, 30_000))),
)
_ACTION = st.one_of([s for weight, s in _WEIGHTED for _ in range(weight)])


def _act(p: FuellingPoint, host: Host, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "lift":
        p.lift_nozzle(action[1])
    elif kind == "hang":
        p.hang_up(action[1] or None)
    elif kind == "fill":  # a whole customer visit, cut short anywhere by the wait
        _, nozzle, (ptype, pvalue), wait_ms, hang = action
        host(Command.AUTHORIZE, preset_type=ptype, preset_value=pvalue, token=host.seq)
        p.lift_nozzle(nozzle)
        p.advance(p.now_s + wait_ms / 1000)
        if hang:
            p.hang_up(nozzle)
    elif kind == "wait":
        p.advance(p.now_s + action[1] / 1000)
    elif kind == "cmd":
        _, code, mask, (ptype, pvalue), names_head = action
        head = host.head()
        host(
            code,
            nozzle_mask=mask,
            preset_type=ptype,
            preset_value=pvalue,
            token=host.seq,
            sale_seq=head if names_head else head + 1,
            price_set_id=host.seq % 100,
        )
    elif kind == "resend":
        p.command(max(host.seq, 1), Command.STOP)
    elif kind == "power":
        p.power_cycle(action[1])
    elif kind == "stuck":
        p.faults.stuck_flow = action[1]
    elif kind == "pulser":
        p.inject_pulser_error()
    elif kind == "busy":
        p.faults.busy_commands = action[1]
    elif kind == "price":
        p.stage_price(action[1], action[2])
    elif kind == "customer":
        p.add_customer(Customer(action[1], p.now_s + 1, hang_up_after_ml=action[2] or None))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**16), st.lists(_ACTION, min_size=5, max_size=40))
def test_totals_and_sales_stay_consistent(seed: int, actions: list[tuple[Any, ...]]) -> None:
    p = make_point(seed, max_unpaid=4, auth_timeout_s=20)
    host = Host(p)
    history: list[Sale] = []
    totals = (p.volume_totals, p.amount_totals)
    for action in actions:
        _act(p, host, action)
        history += p.drain_ended()
        now = (p.volume_totals, p.amount_totals)
        for before, after in zip(totals, now, strict=True):
            assert all(a >= b for a, b in zip(after, before, strict=True))  # monotonic
        totals = now
        r = p.status()
        assert r.unpaid_count == len(p.buffer)
        assert r.last_sale == (p.buffer[0].record() if p.buffer else None)
        if r.fp_state in (FPState.FUELLING, FPState.SUSPENDED_FUELLING):
            assert r.cur_amount_fen == amount_fen(r.cur_volume_ml, r.cur_unit_price)
    p.power_cycle()  # ends whatever is in progress, into the buffer
    history += p.drain_ended()

    assert [s.seq for s in history] == sorted({s.seq for s in history})
    by_seq = {s.seq: s for s in history}
    for buffered in p.buffer:  # the buffer holds ended sales, as they ended (maybe locked)
        assert dataclasses.replace(buffered, state=SaleState.PAYABLE) == by_seq[buffered.seq]
    for sale in history:
        check_sale(sale)
        if sale.preset_type is PresetType.VOLUME:
            assert sale.volume_ml <= sale.preset_value
            if sale.end_reason is EndReason.PRESET_REACHED:
                assert sale.volume_ml == sale.preset_value
        if sale.preset_type is PresetType.AMOUNT:
            assert sale.amount_fen <= sale.preset_value
            if sale.end_reason is EndReason.PRESET_REACHED:
                assert sale.amount_fen == sale.preset_value  # prices here are <= 10 yuan/L
    for nozzle in (1, 2, 3):
        mine = [s for s in history if s.nozzle == nozzle]
        ends = [(0, 0)] + [(s.end_volume_total_ml, s.end_amount_total_fen) for s in mine]
        starts = [(s.start_volume_total_ml, s.start_amount_total_fen) for s in mine]
        assert starts == ends[:-1]  # end totals of sale n == start totals of sale n + 1
        i = nozzle - 1
        assert ends[-1] == (p.volume_totals[i], p.amount_totals[i])
