"""The DART line master's state machine without I/O: round robin, ACK of pump blocks,
sequence numbers, NAK and resend rules, repeats delivered once, offline and back."""

from __future__ import annotations

from devices.dart import (
    CD1,
    DC1,
    BadFrame,
    Command,
    Frame,
    Kind,
    Status,
    encode_block,
)
from devices.dart.master import (
    Answered,
    Delivered,
    Failed,
    LineMaster,
    LineProblem,
    LinkStatus,
    PumpData,
    StatusChanged,
)

A, B = 0x50, 0x51


def pump_data(address: int, seq: int, *statuses: DC1) -> Frame:
    return Frame(address, Kind.DATA, seq, encode_block([Status(s) for s in statuses]))


def test_polls_go_round_robin_and_eot_means_alive() -> None:
    master = LineMaster([A, B])
    first = master.next_exchange()
    assert first.frame == Frame(A, Kind.POLL) and first.expects_reply
    events = master.on_reply([Frame(A, Kind.EOT)])
    assert events == [Answered(A), StatusChanged(A, LinkStatus.ONLINE)]
    assert master.next_exchange().frame == Frame(B, Kind.POLL)
    master.on_reply([Frame(B, Kind.EOT)])
    assert master.next_exchange().frame == Frame(A, Kind.POLL)


def test_a_pump_block_is_acknowledged_and_delivered_once() -> None:
    master = LineMaster([A])
    master.next_exchange()
    events = master.on_reply([pump_data(A, 3, DC1.RESET)])
    assert PumpData(A, (Status(DC1.RESET),)) in events
    ack = master.next_exchange()
    assert ack.frame == Frame(A, Kind.ACKPOLL, 3)  # ack and poll in one frame
    # our ACK was lost: the pump sends block 3 again; it is acknowledged, not delivered
    events = master.on_reply([pump_data(A, 3, DC1.RESET)])
    assert not any(isinstance(e, PumpData) for e in events)
    assert master.next_exchange().frame == Frame(A, Kind.ACKPOLL, 3)
    events = master.on_reply([pump_data(A, 4, DC1.AUTHORIZED)])
    assert PumpData(A, (Status(DC1.AUTHORIZED),)) in events
    assert master.statistics()[A]["repeats"] == 1


def test_a_command_block_goes_first_with_a_bare_ack_before_it_if_one_is_owed() -> None:
    master = LineMaster([A, B])
    master.next_exchange()
    master.on_reply([pump_data(A, 0, DC1.RESET)])
    command = master.submit(A, [Command(CD1.AUTHORIZE)])
    ack = master.next_exchange()
    assert ack.frame == Frame(A, Kind.ACK, 0) and not ack.expects_reply
    assert master.on_reply([]) == []  # nothing expected, nothing counted
    data = master.next_exchange()
    assert data.frame.kind is Kind.DATA and data.frame.seq == 0 and data.command == command
    assert master.on_reply([Frame(A, Kind.ACK, 0)])[-1] == Delivered(A, command)
    second = master.submit(A, [Command(CD1.STOP)])
    assert master.next_exchange().frame.seq == 1  # the next block, the next number
    assert master.on_reply([Frame(A, Kind.ACK, 1)])[-1] == Delivered(A, second)


def test_silence_resends_the_same_block_and_nak_restarts_the_numbering() -> None:
    master = LineMaster([A], max_tries=4)
    command = master.submit(A, [Command(CD1.AUTHORIZE)])
    sent = master.next_exchange().frame
    master.on_reply([])  # silence
    again = master.next_exchange().frame
    assert again == sent  # the same block, the same number
    events = master.on_reply([Frame(A, Kind.NAK, 0)])
    assert LineProblem(A, "NAK 0") in events
    master.next_exchange()
    events = master.on_reply([Frame(A, Kind.ACK, 0)])
    assert events[-1] == Delivered(A, command)
    assert master.statistics()[A]["resends"] == 2


def test_a_block_never_acknowledged_fails_after_max_tries() -> None:
    master = LineMaster([A], max_tries=2, offline_after=5)
    command = master.submit(A, [Command(CD1.STOP)])
    master.next_exchange()
    assert not any(isinstance(e, Failed) for e in master.on_reply([]))
    master.next_exchange()
    events = master.on_reply([BadFrame("CRC 0x0000, expected 0x1234", b"", A)])
    assert Failed(A, command, "no acknowledgement after 2 tries") in events
    assert master.next_exchange().frame == Frame(A, Kind.POLL)


def test_offline_after_three_failed_polls_fails_the_queue_and_comes_back() -> None:
    master = LineMaster([A], offline_after=3, max_tries=10)
    for _ in range(2):
        master.next_exchange()
        master.on_reply([])
    command = master.submit(A, [Command(CD1.RESET)])
    master.next_exchange()
    events = master.on_reply([])
    assert StatusChanged(A, LinkStatus.OFFLINE) in events
    assert Failed(A, command, "pump offline") in events
    assert master.status(A) is LinkStatus.OFFLINE
    assert master.next_exchange().frame == Frame(A, Kind.POLL)
    events = master.on_reply([Frame(A, Kind.EOT)])
    assert StatusChanged(A, LinkStatus.ONLINE) in events


def test_replies_from_another_address_or_extra_frames_are_problems() -> None:
    master = LineMaster([A, B])
    master.next_exchange()
    events = master.on_reply([Frame(B, Kind.EOT)])
    assert LineProblem(A, "reply from 0x51") in events
    assert master.statistics()[A]["failures"] == 1
    master.next_exchange()
    master.on_reply([Frame(B, Kind.EOT)])
    master.next_exchange()
    events = master.on_reply([Frame(A, Kind.EOT), Frame(A, Kind.EOT)])
    assert any(isinstance(e, LineProblem) and "extra" in e.reason for e in events)


def test_an_undecodable_pump_block_is_not_acknowledged() -> None:
    master = LineMaster([A])
    master.next_exchange()
    events = master.on_reply([Frame(A, Kind.DATA, 2, b"\x01\x01\x03")])
    assert any(isinstance(e, LineProblem) and "undecodable" in e.reason for e in events)
    assert master.next_exchange().frame == Frame(A, Kind.POLL)  # no ACKPOLL: resend it
