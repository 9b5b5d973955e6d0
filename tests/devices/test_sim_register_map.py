"""The simulator's sans-IO server side: register map, framing, faults, random customers.

No sockets: requests are built with the project's client-side codecs and fed to the
server-side ones, so both ends of every frame here are exercised.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from devices.gfd1 import (
    COMMAND_START,
    CONFIG_START,
    PRICES_START,
    SETTINGS_START,
    STATUS_COUNT,
    TOTALS_START,
    Command,
    CommandBlock,
    CommandResult,
    FPState,
    Mode,
    PointSettings,
    PresetType,
    decode_status,
    encode_command,
    encode_config,
    encode_status,
    encode_totals,
)
from devices.modbus import ExceptionCode, MbapCodec, Reply, Request, RtuCodec
from devices.modbus.rtu_codec import RtuBadFrame, RtuReply
from devices.sim import Customer, FuellingPoint, NozzleSpec, PointSpec
from devices.sim.framing import Garbage, Incoming, MbapServerCodec, RtuServerCodec
from devices.sim.register_map import RegisterMap
from devices.sim.simulation import SimConfig, Simulation
from tests.devices.modbus_support import mbap, rtu

SPEC = PointSpec((NozzleSpec(92, 789_000), NozzleSpec(95, 842_000)), "GFD1-MAP")
ADDR = ExceptionCode.ILLEGAL_ADDRESS
VALUE = ExceptionCode.ILLEGAL_VALUE


@pytest.fixture
def regs() -> RegisterMap:
    return RegisterMap(FuellingPoint(SPEC, random.Random(1)))


def words(regs: RegisterMap, request: Request, now_s: float = 0.0) -> tuple[int, ...]:
    reply = regs.handle(request, now_s)
    assert reply.exception_code is None, reply
    return reply.registers


def refused(regs: RegisterMap, request: Request) -> int | None:
    return regs.handle(request, 0.0).exception_code


def command(regs: RegisterMap, block: CommandBlock) -> Reply:
    return regs.handle(Request.write_multiple(1, COMMAND_START, tuple(encode_command(block))), 0)


# -- the register map -----------------------------------------------------------------------


def test_input_blocks_read_whole_and_in_any_sub_range(regs: RegisterMap) -> None:
    point = regs.point
    status = encode_status(point.status())
    assert words(regs, Request.read_input(1, 0, STATUS_COUNT)) == tuple(status)
    assert words(regs, Request.read_input(1, 20, 6)) == tuple(status[20:26])
    assert words(regs, Request.read_input(1, 26, 6)) == (0,) * 6  # reserved
    assert words(regs, Request.read_input(1, TOTALS_START, 64)) == tuple(
        encode_totals(point.totals())
    )
    assert words(regs, Request.read_input(1, TOTALS_START + 16, 8)) == (0,) * 8  # no nozzle 3
    assert words(regs, Request.read_input(1, CONFIG_START, 18)) == tuple(
        encode_config(point.config())
    )
    assert words(regs, Request.read_input(1, CONFIG_START + 9, 1)) == (0,)  # the spare word


@pytest.mark.parametrize(
    ("address", "count"), [(50, 10), (57, 1), (90, 20), (163, 2), (199, 2), (217, 2), (1000, 1)]
)
def test_input_reads_outside_one_block_are_refused(
    regs: RegisterMap, address: int, count: int
) -> None:
    assert refused(regs, Request.read_input(1, address, count)) == ADDR


def test_reads_follow_the_model_clock(regs: RegisterMap) -> None:
    assert command(regs, CommandBlock(1, Command.AUTHORIZE)).exception_code is None
    regs.point.lift_nozzle(1)
    first = decode_status(words(regs, Request.read_input(1, 0, STATUS_COUNT), 1.0))
    later = decode_status(words(regs, Request.read_input(1, 0, STATUS_COUNT), 5.0))
    assert first.fp_state is later.fp_state is FPState.FUELLING
    assert 0 < first.cur_volume_ml < later.cur_volume_ml
    assert later.heartbeat == 5


def test_command_block_executes_once_and_reads_back(regs: RegisterMap) -> None:
    block = CommandBlock(3, Command.AUTHORIZE, preset_type=PresetType.VOLUME, preset_value=900)
    reply = command(regs, block)
    assert (reply.address, reply.count) == (COMMAND_START, 11)
    assert words(regs, Request.read_holding(1, COMMAND_START, 11)) == tuple(encode_command(block))
    assert command(regs, block).exception_code is None  # the resend
    status = regs.point.status()
    assert (status.fp_state, status.cur_sale_seq, status.cmd_ack_seq) == (FPState.AUTHORIZED, 1, 3)
    assert regs.statistics().commands == 2
    regs.point.power_cycle(lose_in_progress=True)
    assert words(regs, Request.read_holding(1, COMMAND_START, 11)) == (0,) * 11  # RAM


def test_refused_commands_are_command_results_not_modbus_exceptions(regs: RegisterMap) -> None:
    raw = (1, 99) + (0,) * 9  # an unknown command code
    assert regs.handle(Request.write_multiple(1, COMMAND_START, raw), 0).exception_code is None
    assert regs.point.status().cmd_result is CommandResult.UNKNOWN_CMD
    assert command(regs, CommandBlock(2, Command.CLEAR_SALE, sale_seq=5)).exception_code is None
    assert regs.point.status().cmd_result is CommandResult.BAD_ARG


def test_command_block_is_written_whole_by_fc16_only(regs: RegisterMap) -> None:
    block = tuple(encode_command(CommandBlock(1, Command.AUTHORIZE)))
    assert refused(regs, Request.write_single(1, COMMAND_START, 1)) == ADDR
    assert refused(regs, Request.write_multiple(1, COMMAND_START, block[:10])) == ADDR
    assert refused(regs, Request.write_multiple(1, COMMAND_START - 1, (0, *block))) == ADDR
    assert regs.point.state is FPState.IDLE and regs.statistics().commands == 0


def test_prices_are_staged_by_fc16_and_fc06(regs: RegisterMap) -> None:
    assert words(regs, Request.read_holding(1, PRICES_START, 16))[:4] == (12, 2568, 12, 55568)
    regs.handle(Request.write_multiple(1, PRICES_START, (0, 800_000 & 0xFFFF)), 0)
    assert regs.point.staged_prices == (800_000 & 0xFFFF, 842_000)
    assert refused(regs, Request.write_single(1, PRICES_START + 1, 0)) == VALUE  # price 0
    assert regs.point.staged_prices == (800_000 & 0xFFFF, 842_000)
    regs.handle(Request.write_single(1, PRICES_START + 2, 13), 0)  # the high word
    assert regs.point.staged_prices == (800_000 & 0xFFFF, (13 << 16) | (842_000 & 0xFFFF))
    assert refused(regs, Request.write_multiple(1, PRICES_START + 2, (0, 1, 0, 1))) == ADDR
    assert regs.point.applied_prices == (789_000, 842_000)  # until APPLY_PRICES


def test_settings_are_written_in_any_sub_range(regs: RegisterMap) -> None:
    assert words(regs, Request.read_holding(1, SETTINGS_START, 4)) == (0, 3, 120, 0)
    regs.handle(Request.write_single(1, SETTINGS_START + 3, 1), 0)
    regs.handle(Request.write_multiple(1, SETTINGS_START, (30, 5)), 0)
    assert regs.point.settings_block() == PointSettings(30, 5, 120, Mode.STAND_ALONE)
    assert refused(regs, Request.write_multiple(1, SETTINGS_START + 2, (60, 7))) == VALUE
    assert regs.point.settings_block().auth_timeout_s == 120  # nothing of it applied
    assert refused(regs, Request.write_multiple(1, SETTINGS_START + 3, (1, 1))) == ADDR
    assert regs.statistics().exceptions == {VALUE: 1, ADDR: 1}


# -- transport faults and unit ids ------------------------------------------------------------


def _sim(**config: Any) -> Simulation:
    return Simulation(SimConfig(stations=2, pumps_per_station=2, **config))


def test_serve_applies_the_transport_faults_of_the_point() -> None:
    sim = _sim()
    read = Request.read_input(1, 0, 2)
    assert sim.serve(0, read, 0.0, rtu=False) is not None
    assert sim.serve(0, Request.read_input(3, 0, 2), 0.0, rtu=False) is None  # no such unit
    faults = sim.point(0, 1).point.faults
    faults.busy_reply_probability = 1.0
    block = tuple(encode_command(CommandBlock(1, Command.AUTHORIZE)))
    answer = sim.serve(0, Request.write_multiple(1, COMMAND_START, block), 0.0, rtu=False)
    assert answer is not None and answer.reply is not None
    assert answer.reply.exception_code == ExceptionCode.DEVICE_BUSY
    assert sim.point(0, 1).point.state is FPState.IDLE  # not executed
    faults.busy_reply_probability, faults.drop_reply_probability = 0.0, 1.0
    answer = sim.serve(0, Request.write_multiple(1, COMMAND_START, block), 0.0, rtu=False)
    assert answer is not None and answer.reply is None
    assert sim.point(0, 1).point.state is FPState.AUTHORIZED  # executed, reply lost
    faults.drop_reply_probability, faults.crc_error_probability = 0.0, 1.0
    faults.delay_reply_probability, faults.delay_reply_s = 1.0, 0.25
    tcp, line = sim.serve(0, read, 0.0, rtu=False), sim.serve(0, read, 0.0, rtu=True)
    assert tcp is not None and line is not None
    assert (tcp.delay_s, tcp.corrupt_crc, line.corrupt_crc) == (0.25, False, True)
    assert sim.point(0, 2).snapshot()["requests"] == 0  # the other pump saw nothing
    assert sim.statistics()["busy"] == sim.statistics()["dropped"] == 1


def test_fault_draws_are_per_point_and_reproducible() -> None:
    def drops(seed: int) -> list[bool]:
        sim = _sim(seed=seed)
        sim.point(1, 2).point.faults.drop_reply_probability = 0.5
        out = []
        for _ in range(40):
            answer = sim.serve(1, Request.read_input(2, 0, 1), 0.0, rtu=False)
            assert answer is not None
            out.append(answer.reply is None)
        return out

    assert drops(3) == drops(3) and drops(3) != drops(4)
    assert 5 < sum(drops(3)) < 35


# -- framing ----------------------------------------------------------------------------------


def test_mbap_codec_skips_garbage_and_splits_pipelined_frames() -> None:
    client, server = MbapCodec(), MbapServerCodec()
    frames = b"".join(client.encode(tid, Request.read_input(tid, 0, 3)) for tid in (1, 2, 3))
    stream = b"\x00\x07\x55\x55junk" + frames
    events = [e for i in range(len(stream)) for e in server.feed(stream[i : i + 1])]
    assert isinstance(events[0], Garbage)
    incoming = [e for e in events[1:] if isinstance(e, Incoming)]
    assert [(e.transaction_id, e.unit) for e in incoming] == [(1, 1), (2, 2), (3, 3)]
    assert server.garbage_runs == 1 and server.dropped_bytes == 8


@pytest.mark.parametrize(
    ("pdu", "refusal"),
    [
        (bytes([0x2B, 0x0E, 0x01, 0x00]), ExceptionCode.ILLEGAL_FUNCTION),
        (bytes([0x01, 0x00, 0x00, 0x00, 0x08]), ExceptionCode.ILLEGAL_FUNCTION),  # coils
        (bytes([0x03, 0x03, 0xE8, 0x00, 0x00]), ExceptionCode.ILLEGAL_VALUE),  # 0 registers
        (bytes([0x04, 0x00, 0x00, 0x00, 0x7E]), ExceptionCode.ILLEGAL_VALUE),  # 126
        (bytes([0x04, 0xFF, 0xFF, 0x00, 0x02]), ExceptionCode.ILLEGAL_ADDRESS),  # past 65535
        (bytes([0x10, 0x04, 0xB0, 0x00, 0x02, 0x02, 0x00, 0x01]), ExceptionCode.ILLEGAL_VALUE),
    ],
)
def test_sound_frames_with_bad_requests_are_refused(pdu: bytes, refusal: ExceptionCode) -> None:
    (event,) = MbapServerCodec().feed(mbap(7, 1, pdu))
    assert isinstance(event, Incoming) and event.request is None
    assert (event.transaction_id, event.function, event.refusal) == (7, pdu[0], refusal)


def test_rtu_codec_finds_frames_by_crc_among_noise() -> None:
    client, server = RtuCodec(), RtuServerCodec()
    request = Request.write_multiple(2, SETTINGS_START, (10, 4))
    frame = client.encode(request)
    bad = rtu(bytes([2, 4, 0, 0, 0, 1]))[:-1] + b"\x00"  # a read with a broken CRC
    events = server.feed(b"\x02\x03" + bad)  # "02 03" is a read whose CRC fails, too
    events += server.feed(frame[:5])
    events += server.feed(frame[5:])
    incoming = [e for e in events if isinstance(e, Incoming)]
    assert [e.request for e in incoming] == [request]
    assert server.buffered == 0 and all(isinstance(e, Garbage) for e in events[:-1])
    server.feed(frame[:4])
    assert [type(e) for e in server.flush()] == [Garbage] and server.buffered == 0


def test_rtu_replies_and_corrupted_replies() -> None:
    client, server = RtuCodec(), RtuServerCodec()
    request = Request.read_input(3, 0, 2)
    reply = Reply(3, 4, registers=(1, 3))
    good = client.feed(server.encode(reply), request)
    assert isinstance(good, RtuReply) and good.reply.registers == (1, 3)
    client.discard()
    assert isinstance(client.feed(server.encode(reply, corrupt_crc=True), request), RtuBadFrame)


# -- customers --------------------------------------------------------------------------------


def test_an_unattended_customer_gives_up_after_their_patience() -> None:
    point = FuellingPoint(SPEC, random.Random(1))
    point.add_customer(Customer(2, lift_at_s=1.0, hang_up_after_ml=5_000, patience_s=30.0))
    point.advance(30.9)
    assert point.status().fp_state is FPState.CALLING
    point.advance(31.0)
    assert point.status().fp_state is FPState.IDLE and point.customers == 0
    point.add_customer(Customer(1, lift_at_s=40.0, hang_up_after_ml=5_000, patience_s=30.0))
    point.advance(45.0)
    assert point.command(1, Command.AUTHORIZE) is CommandResult.OK
    point.advance(200.0)  # served in time: patience no longer matters
    assert point.buffer[0].volume_ml == 5_000


def test_random_customers_arrive_reproducibly_and_buy_in_stand_alone_mode() -> None:
    def run(seed: int) -> list[tuple[int, int, int]]:
        sim = _sim(seed=seed, customers_per_minute=2.0, mode=Mode.STAND_ALONE)
        for second in range(1, 1200):
            sim.tick(float(second))
            for sp in sim.points.values():
                point = sp.point
                while point.buffer:  # the attendant takes the money; the host collects
                    seq = point.status().cmd_ack_seq + 1
                    point.command(seq, Command.CLEAR_SALE, sale_seq=point.buffer[0].seq)
                sp.collect()
        return [(s, u, sale.volume_ml) for s, u, sale in sim.ledger()]

    sales, again, other = run(5), run(5), run(6)
    assert sales == again
    assert sales != other
    assert len(sales) > 20 and all(volume > 0 for _, _, volume in sales)
    assert {(s, u) for s, u, _ in sales} == {(0, 1), (0, 2), (1, 1), (1, 2)}


def test_a_model_failure_is_exception_04_for_that_request_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = _sim()

    def broken(self: RegisterMap, request: Request, now_s: float) -> Reply:
        raise RuntimeError("model bug")

    monkeypatch.setattr(RegisterMap, "handle", broken)
    answer = sim.serve(0, Request.read_input(1, 0, 1), 0.0, rtu=False)
    assert answer is not None and answer.reply is not None
    assert answer.reply.exception_code == ExceptionCode.DEVICE_FAILURE
    monkeypatch.undo()
    answer = sim.serve(0, Request.read_input(1, 0, 1), 0.0, rtu=False)
    assert answer is not None and answer.reply == Reply(1, 4, None, (1,), 0, 1)
