"""The simulated DART pump without I/O: frames in, reply frames out, over a real
FuellingPoint (its physics, buffer and totals), model time passed in by the test.

Covers the link rules (EOT, repeats of unacknowledged blocks, a controller resend
acknowledged but not executed, NAK for a bad CRC or an undecodable block), a whole sale
with DC1/DC2/DC3/DC101 as the switch's driver reads them, presets, STOP, switch off,
errors, and the power-up rule (status 0 until CD5 prices and CD1 RESET). The station
tests add routing by address and the transport faults.
"""

from __future__ import annotations

import random

from devices.dart import (
    CD1,
    DC1,
    AllowedNozzles,
    Command,
    Filling,
    Frame,
    FrameDecoder,
    Kind,
    NozzlePrice,
    PresetAmount,
    PresetVolume,
    Prices,
    Status,
    Totals,
    TotalsRequest,
    Transaction,
    decode_from_pump,
    encode,
    encode_block,
)
from devices.dart.frames import BadFrame
from devices.dart.sim import AUTH_TOKEN, DartPumpSide, pump_address
from devices.dart.sim.station import DartStation
from devices.dart.transactions import Decimals
from devices.gfd1.states import EndReason, FPState
from devices.sim.dispenser import FuellingPoint
from devices.sim.records import NozzleSpec, PointSpec
from devices.sim.simulation import SimConfig, Simulation

A = 0x50  # pump 1
PRICE_92, PRICE_95 = 789, 842  # fen per litre: the point's 789_000 / 842_000 milli-fen


class Controller:
    """Plays the line master against one pump side, one frame at a time."""

    def __init__(self, side: DartPumpSide) -> None:
        self.side = side
        self.now = 0.0
        self.seq = 0  # our next block number

    def send(self, frame: Frame | BadFrame, after_s: float = 0.0) -> Frame | None:
        self.now += after_s
        return self.side.handle(frame, self.now)

    def poll(self, after_s: float = 0.0) -> Frame:
        reply = self.send(Frame(self.side.address, Kind.POLL), after_s)
        assert reply is not None
        return reply

    def block(self, *transactions: Transaction) -> Frame:
        """A new DATA block; asserts the pump acknowledged it."""
        frame = Frame(self.side.address, Kind.DATA, self.seq, encode_block(transactions))
        self.seq = (self.seq + 1) % 16
        reply = self.send(frame)
        assert reply == Frame(self.side.address, Kind.ACK, frame.seq)
        return frame

    def ack(self, block: Frame) -> None:
        assert self.send(Frame(self.side.address, Kind.ACK, block.seq)) is None

    def news(self, after_s: float = 0.0) -> list[Transaction]:
        """Poll, expect a DATA block, acknowledge it, return its transactions."""
        reply = self.poll(after_s)
        assert reply.kind is Kind.DATA, reply
        self.ack(reply)
        return decode_from_pump(reply.data)

    def quiet(self, after_s: float = 0.0) -> None:
        assert self.poll(after_s).kind is Kind.EOT


def make_pump(*, programmed: bool = True) -> tuple[FuellingPoint, Controller]:
    spec = PointSpec((NozzleSpec(92, 789_000), NozzleSpec(95, 842_000)))
    point = FuellingPoint(spec, random.Random(1))
    return point, Controller(DartPumpSide(point, 1, programmed=programmed))


def test_addresses_and_a_quiet_pump() -> None:
    assert pump_address(1) == 0x50 and pump_address(32) == 0x6F
    point, c = make_pump()
    assert point.settings.max_unpaid == 1  # DART keeps one ended sale
    assert c.poll() == Frame(A, Kind.EOT, 0)
    assert c.send(Frame(0x51, Kind.POLL)) is None  # another pump's frame: silence
    assert c.block(Command(CD1.RETURN_STATUS)).seq == 0
    assert c.news() == [Status(DC1.RESET), NozzlePrice(0, 0, False)]
    assert c.poll() == Frame(A, Kind.EOT, 1)  # n: the number of the pump's next block


def test_a_whole_sale_as_the_driver_sees_it() -> None:
    point, c = make_pump()
    point.lift_nozzle(1)
    assert c.news() == [NozzlePrice(PRICE_92, 1, True)]  # calling: DC3 only, status 1
    c.block(AllowedNozzles((1,)), PresetVolume(50_000), Command(CD1.AUTHORIZE))
    assert point.state is FPState.AUTHORIZED
    assert c.news() == [Status(DC1.AUTHORIZED), NozzlePrice(PRICE_92, 1, True)]

    first = c.poll(after_s=3.0)  # flow started 0.5 s after the authorization
    status, nozzle, filling = decode_from_pump(first.data)
    assert (status, nozzle) == (Status(DC1.FILLING), NozzlePrice(PRICE_92, 1, True))
    assert isinstance(filling, Filling) and filling.volume > 0
    assert c.poll(after_s=1.0) == first  # not acknowledged: the same block, same number
    c.ack(first)
    for _ in range(3):  # DC2 on every poll while filling, and only DC2
        (update,) = c.news(after_s=1.0)
        assert isinstance(update, Filling) and update.volume > filling.volume
        filling = update

    point.hang_up(1)
    (sale,) = point.buffer
    assert c.news() == [
        Status(DC1.FILLING_COMPLETED),
        NozzlePrice(PRICE_92, 1, False),
        Filling(sale.volume_ml, sale.amount_fen),  # mL and fen: 3 and 2 decimals
    ]
    c.quiet(after_s=5.0)  # status 5 is kept until RESET
    c.block(Command(CD1.AUTHORIZE))  # refused: the ended sale is not cleared
    c.quiet()
    c.block(TotalsRequest(0x01), TotalsRequest(0x11), TotalsRequest(0x02))
    assert c.news() == [
        Totals(0x01, point.volume_totals[0], point.amount_totals[0], 0),
        Totals(0x11, point.amount_totals[0]),
        Totals(0x02, 0, 0, 0),
    ]
    assert point.volume_totals[0] == sale.volume_ml

    c.block(Command(CD1.RETURN_FILLING_INFO))
    assert c.news() == [NozzlePrice(PRICE_92, 1, False), Filling(sale.volume_ml, sale.amount_fen)]
    c.block(Command(CD1.RESET))
    assert c.news() == [Status(DC1.RESET), NozzlePrice(0, 0, False)]
    assert point.buffer == ()
    (ended,) = point.drain_ended()
    assert ended.auth_token == AUTH_TOKEN and ended.end_reason is EndReason.NOZZLE_HUNG_UP
    stats = c.side.statistics()
    assert stats.resends == 1 and stats.repeats == 0 and stats.refused == 1


def test_presets_end_in_status_6_on_the_exact_figure() -> None:
    point, c = make_pump()
    point.lift_nozzle(2)
    c.news()
    c.block(PresetVolume(2_000), Command(CD1.AUTHORIZE))  # 2.000 L
    assert c.news()[0] == Status(DC1.AUTHORIZED)
    assert c.news(after_s=30.0) == [  # filling began and ended between two polls
        Status(DC1.PRESET_REACHED),
        NozzlePrice(PRICE_95, 2, True),  # the customer still holds the nozzle
        Filling(2_000, 1_684),  # 2 L at 8.42
    ]
    c.block(Command(CD1.RESET))
    assert point.state is FPState.CALLING and c.news()[0] == Status(DC1.RESET)
    c.block(PresetAmount(1_000), Command(CD1.AUTHORIZE))  # 10.00 yuan
    c.news()
    assert c.news(after_s=30.0) == [
        Status(DC1.PRESET_REACHED),
        NozzlePrice(PRICE_95, 2, True),
        Filling(1_188, 1_000),  # the last mL that does not pass 10.00
    ]


def test_a_controller_resend_is_acknowledged_but_not_executed_twice() -> None:
    point, c = make_pump()
    point.lift_nozzle(1)
    authorize = c.block(Command(CD1.AUTHORIZE))
    executed = point.status().cmd_ack_seq
    assert c.send(authorize) == Frame(A, Kind.ACK, authorize.seq)  # our ACK was "lost"
    assert point.status().cmd_ack_seq == executed and c.side.statistics().repeats == 1
    # the same number with other bytes is a new block, and runs
    stop = Frame(A, Kind.DATA, authorize.seq, encode_block([Command(CD1.STOP)]))
    assert c.send(stop) == Frame(A, Kind.ACK, authorize.seq)
    assert point.status().cmd_ack_seq != executed
    assert point.buffer[0].volume_ml == 0  # STOP before flow: a zero sale, status 5
    assert c.news()[0] == Status(DC1.FILLING_COMPLETED)


def test_bad_crc_and_undecodable_blocks_get_nak() -> None:
    point, c = make_pump()
    raw = bytearray(encode(Frame(A, Kind.DATA, 5, encode_block([Command(CD1.AUTHORIZE)]))))
    raw[-3] ^= 0x01  # the CRC's high byte
    (bad,) = FrameDecoder().feed(bytes(raw))
    assert isinstance(bad, BadFrame) and bad.address == A
    assert c.send(bad) == Frame(A, Kind.NAK, 5)
    # a CD1 with a code DART does not have
    assert c.send(Frame(A, Kind.DATA, 6, bytes([0x01, 0x01, 0x77]))) == Frame(A, Kind.NAK, 6)
    (noise,) = FrameDecoder().feed(bytes([A, 0x90, 0xFA]))  # unknown control byte
    assert isinstance(noise, BadFrame) and c.send(noise) is None
    assert point.state is FPState.IDLE
    stats = c.side.statistics()
    assert (stats.naks_out, stats.bad_frames, stats.blocks_in) == (2, 2, 0)


def test_nak_and_ackpoll_from_the_controller() -> None:
    point, c = make_pump()
    assert c.send(Frame(A, Kind.NAK, 0)) == Frame(A, Kind.EOT, 0)  # nothing to resend
    point.lift_nozzle(1)
    block = c.poll()
    assert c.send(Frame(A, Kind.NAK, 0)) == block  # resent unchanged
    assert c.send(Frame(A, Kind.ACK, (block.seq + 1) % 16)) is None  # not its number
    assert c.poll() == block
    point.hang_up()
    reply = c.send(Frame(A, Kind.ACKPOLL, block.seq))  # ack it and poll at once
    assert reply is not None and reply.seq == (block.seq + 1) % 16
    assert decode_from_pump(reply.data) == [NozzlePrice(0, 0, False)]


def test_stop_switch_off_suspend_and_prices_by_state() -> None:
    point, c = make_pump()
    c.block(Command(CD1.SWITCH_OFF))
    assert c.news() == [Status(DC1.SWITCHED_OFF), NozzlePrice(0, 0, False)]
    c.block(Command(CD1.AUTHORIZE))
    c.quiet()
    c.block(Command(CD1.RESET))
    assert c.news()[0] == Status(DC1.RESET)

    point.lift_nozzle(1)
    c.news()
    c.block(AllowedNozzles((2,)), Command(CD1.AUTHORIZE))  # nozzle 1 is out: refused
    c.quiet()
    c.block(Command(CD1.AUTHORIZE))  # CD2 was consumed: all nozzles
    assert c.news()[0] == Status(DC1.AUTHORIZED)
    c.block(Prices((900, 900)))  # no repricing while authorized
    assert point.applied_prices == (789_000, 842_000)
    assert c.news(after_s=3.0)[0] == Status(DC1.FILLING)
    c.block(Command(CD1.SUSPEND))
    assert c.news()[0] == Status(DC1.SUSPENDED)
    c.block(Command(CD1.RESUME))
    assert c.news()[0] == Status(DC1.FILLING)
    c.block(Command(CD1.STOP))
    news = c.news()
    assert news[0] == Status(DC1.FILLING_COMPLETED) and isinstance(news[2], Filling)
    assert point.buffer[0].end_reason is EndReason.HOST_STOP
    c.block(Command(CD1.RESET), Prices((800, 850)))  # status 1 by the time CD5 runs
    assert point.applied_prices == (800_000, 850_000)
    assert c.news() == [Status(DC1.RESET), NozzlePrice(800, 1, True)]


def test_power_cycle_means_not_programmed_until_prices_and_reset() -> None:
    point, c = make_pump()
    c.block(Command(CD1.RETURN_STATUS))
    c.news()
    point.power_cycle()
    assert c.news() == [Status(DC1.NOT_PROGRAMMED), NozzlePrice(0, 0, False)]
    point.lift_nozzle(1)
    c.news()
    c.block(Command(CD1.AUTHORIZE))  # refused in status 0
    c.block(Command(CD1.RESET))  # no prices yet: still 0
    c.quiet()
    assert point.state is FPState.CALLING
    c.block(Prices((PRICE_92, PRICE_95)), Command(CD1.RESET))
    assert c.news() == [Status(DC1.RESET), NozzlePrice(PRICE_92, 1, True)]
    c.block(Command(CD1.AUTHORIZE))
    assert c.news()[0] == Status(DC1.AUTHORIZED)
    assert c.side.statistics().power_ups == 1
    snap = c.side.snapshot()
    assert snap["status"] == DC1.AUTHORIZED and snap["programmed"] and snap["refused"] == 1


def test_a_power_loss_mid_sale_keeps_the_sale_for_the_controller() -> None:
    point, c = make_pump()
    point.lift_nozzle(1)
    c.news()
    c.block(Command(CD1.AUTHORIZE))
    c.news()
    filling = c.poll(after_s=3.0)  # this block is never acknowledged
    point.power_cycle()
    assert c.news() == [Status(DC1.NOT_PROGRAMMED), NozzlePrice(PRICE_92, 1, True)]
    assert c.side.statistics().resends == 0  # the old block went with the RAM
    assert filling.kind is Kind.DATA
    c.block(Command(CD1.RETURN_FILLING_INFO))
    (sale,) = point.buffer
    assert c.news() == [NozzlePrice(PRICE_92, 1, True), Filling(sale.volume_ml, sale.amount_fen)]
    c.block(Prices((PRICE_92, PRICE_95)), Command(CD1.RESET))  # programmed: the sale shows
    assert c.news()[0] == Status(DC1.FILLING_COMPLETED)
    c.block(Command(CD1.RESET))
    assert c.news()[0] == Status(DC1.RESET) and point.buffer == ()


def test_an_error_is_status_0_until_reset() -> None:
    point, c = make_pump()
    point.inject_pulser_error()
    assert c.news()[0] == Status(DC1.NOT_PROGRAMMED)
    c.block(Command(CD1.RESET))
    assert c.news()[0] == Status(DC1.RESET) and point.state is FPState.IDLE


def test_a_restored_pump_starts_not_programmed_and_other_decimals_convert() -> None:
    spec = PointSpec((NozzleSpec(92, 789_000),))
    point = FuellingPoint(spec, random.Random(1))
    side = DartPumpSide(point, 3, Decimals(volume=2, amount=2, price=3), programmed=False)
    c = Controller(side)
    assert side.address == 0x52
    c.block(Command(CD1.AUTHORIZE))  # refused: not programmed
    c.block(Prices((7_890,)), Command(CD1.RESET), Command(CD1.RETURN_STATUS))  # 7.890/L
    point.lift_nozzle(1)
    assert c.news() == [Status(DC1.RESET), NozzlePrice(7_890, 1, True)]
    c.block(PresetVolume(150), Command(CD1.AUTHORIZE))  # 1.50 L
    c.news()
    assert c.news(after_s=30.0)[-1] == Filling(150, 1_184)  # 1500 mL at 7.89: 11.835


# -- the station: routing and transport faults ---------------------------------------------


def test_station_routes_by_address_and_applies_faults() -> None:
    sim = Simulation(SimConfig(stations=1, pumps_per_station=2))
    station = DartStation(sim, 0)
    assert station.addresses == [0x50, 0x51]
    assert station.handle(Frame(0x52, Kind.POLL), 0.0) is None  # not on this line
    answer = station.handle(Frame(0x51, Kind.POLL), 0.0)
    assert answer is not None and answer.wire == encode(Frame(0x51, Kind.EOT))
    point = sim.point(0, 2)
    assert point.dart is not None and point.snapshot()["dart"]["frames_in"] == 1

    point.point.faults.crc_error_probability = 1.0
    answer = station.handle(Frame(0x51, Kind.POLL), 0.0)
    assert answer is not None and answer.corrupted and answer.wire is not None
    (garbled,) = FrameDecoder().feed(answer.wire)
    assert isinstance(garbled, BadFrame)
    block = Frame(0x51, Kind.DATA, 0, encode_block([Command(CD1.RETURN_STATUS)]))
    assert station.handle(block, 0.0) is not None  # executed; its ACK garbled
    answer = station.handle(Frame(0x51, Kind.POLL), 0.0)
    assert answer is not None and answer.wire is not None
    point.point.faults.crc_error_probability = 0.0
    (data,) = FrameDecoder().feed(answer.wire)
    assert isinstance(data, BadFrame) and "CRC" in data.reason

    point.point.faults.drop_reply_probability = 1.0
    answer = station.handle(Frame(0x51, Kind.POLL), 0.0)  # sent again, and lost
    assert answer is not None and answer.dropped and answer.wire is None
    point.point.faults.drop_reply_probability = 0.0
    point.point.faults.delay_reply_probability, point.point.faults.delay_reply_s = 1.0, 0.3
    answer = station.handle(Frame(0x51, Kind.POLL), 0.0)  # again, late, intact
    assert answer is not None and answer.delay_s == 0.3 and answer.reply is not None
    assert decode_from_pump(answer.reply.data)[0] == Status(DC1.RESET)
    assert (point.dropped, point.delayed, point.corrupted) == (1, 1, 3)
