"""The sans-IO Modbus cores, fed bytes directly: no sockets, no ttys, no trio."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.pdu import DecodePDU

from devices.modbus import (
    ExceptionCode,
    MbapCodec,
    ModbusException,
    ModbusFrameError,
    Parity,
    Reply,
    Request,
    RtuCodec,
    SerialSettings,
    TransactionTable,
)
from devices.modbus.mbap import MbapBadPdu, MbapGarbage, MbapReply
from devices.modbus.pdu import check_reply, decode_read_reply, decode_with_pymodbus
from devices.modbus.rtu_codec import RtuBadFrame, RtuReply
from tests.devices.modbus_support import mbap, registers_pdu, rtu


def test_requests_are_validated() -> None:
    bad_requests: list[Callable[[], Request]] = [
        lambda: Request.read_input(1, 0, 0),
        lambda: Request.read_input(1, 0, 126),
        lambda: Request.read_holding(256, 0, 1),
        lambda: Request.read_holding(1, 65535, 2),
        lambda: Request.write_single(1, 0, 0x10000),
        lambda: Request.write_multiple(1, 0, ()),
        lambda: Request.write_multiple(1, 0, (0,) * 124),
    ]
    for bad in bad_requests:
        with pytest.raises(ValueError):
            bad()


def test_mbap_request_frames_are_the_specs() -> None:
    codec = MbapCodec()
    assert codec.encode(1, Request.read_input(1, 0, 57)).hex() == "000100000006010400000039"
    assert codec.encode(0x1234, Request.write_single(7, 1000, 0xBEEF)).hex() == (
        "12340000000607" + "0603e8beef"
    )
    assert codec.encode(2, Request.write_multiple(3, 1000, (1, 2))).hex() == (
        "00020000000b03" + "1003e8000204" + "00010002"
    )


def test_mbap_reply_fed_a_byte_at_a_time() -> None:
    codec = MbapCodec()
    frame = mbap(42, 3, registers_pdu(4, [10, 20]))
    events = [event for byte in frame for event in codec.feed(bytes([byte]))]
    assert events == [MbapReply(42, Reply(3, 4, registers=(10, 20)))]
    assert codec.buffered == 0


def test_mbap_garbage_is_one_event_per_run_and_the_stream_resyncs() -> None:
    codec = MbapCodec()
    reply = mbap(1, 1, registers_pdu(3, [7]))
    events = codec.feed(b"\x00\x00\x00\x07" + b"\xee" * 5)  # protocol id 7
    events += codec.feed(b"\xee" * 20 + reply)
    assert events == [MbapGarbage("protocol id 7"), MbapReply(1, Reply(1, 3, registers=(7,)))]
    assert codec.dropped_bytes == 29
    assert codec.feed(b"\xff" * 6 + reply) == [MbapGarbage("protocol id 65535"), events[1]]


def test_mbap_header_length_out_of_range_is_garbage() -> None:
    codec = MbapCodec()
    events = codec.feed(mbap(1, 1, b"") + mbap(2, 1, registers_pdu(4, [1])))  # length 1
    assert events == [MbapGarbage("length 1"), MbapReply(2, Reply(1, 4, registers=(1,)))]


def test_mbap_undecodable_pdu_keeps_its_transaction_id() -> None:
    codec = MbapCodec()
    assert codec.feed(mbap(9, 2, bytes([4, 40, 1, 2]))) == [MbapBadPdu(9, 2)]
    assert codec.feed(mbap(10, 2, bytes([0x84, 2]))) == [
        MbapReply(10, Reply(2, 4, exception_code=2))
    ]


def test_transaction_ids_skip_pending_and_abandoned_ones_and_wrap() -> None:
    table: TransactionTable[str] = TransactionTable(remember_abandoned=2)
    assert [table.open("a"), table.open("b"), table.open("c")] == [1, 2, 3]
    table.abandon(2)
    assert table.pop(1) == "a" and table.pop(1) is None
    assert table.was_abandoned(2) and not table.was_abandoned(2)
    table._next = 0xFFFF
    assert [table.open("d"), table.open("e")] == [0xFFFF, 1]  # 0 is never used
    table.abandon(1)
    assert table.open("f") == 2 and table.open("g") == 4  # 3 is pending, 1 abandoned
    assert sorted(table.drain()) == ["c", "d", "f", "g"] and len(table) == 0


def test_rtu_request_frame_and_reply() -> None:
    codec = RtuCodec()
    request = Request.read_input(1, 0, 1)
    assert codec.encode(request).hex() == "01040000000131ca"
    frame = rtu(bytes([1, 4, 2, 0x12, 0x34]))
    assert codec.feed(frame[:3], request) is None
    assert codec.feed(frame[3:], request) == RtuReply(Reply(1, 4, registers=(0x1234,)))
    assert codec.buffered == 0


def test_rtu_bad_crc_is_a_bad_frame() -> None:
    codec, request = RtuCodec(), Request.read_holding(1, 0, 1)
    frame = rtu(bytes([1, 3, 2, 0, 5]))
    assert codec.feed(frame[:-1] + bytes([frame[-1] ^ 1]), request) == RtuBadFrame(
        "CRC mismatch", 7
    )
    assert codec.buffered == 0
    assert codec.feed(rtu(bytes([1, 0x83, 6])), request) == RtuReply(Reply(1, 3, exception_code=6))


def test_rtu_noise_before_the_reply_is_skipped() -> None:
    # pymodbus's framer alone reads 0xFF 0x01 as "unit 255, function 01" and drops it all.
    codec, request = RtuCodec(), Request.read_holding(1, 0, 1)
    frame = rtu(bytes([1, 3, 2, 0, 5]))
    assert codec.feed(b"\xff" + frame[:4], request) is None
    assert codec.feed(frame[4:], request) == RtuReply(Reply(1, 3, registers=(5,)))
    # an anchor in the noise whose CRC fails does not hide the real reply behind it
    assert codec.feed(b"\x01\x03\x02\x00\x00\x00\x00" + frame, request) == RtuReply(
        Reply(1, 3, registers=(5,))
    )
    assert codec.feed(b"\x00\x00\x00", request) is None  # noise alone: wait (or time out)
    assert codec.discard() == 3


def test_check_reply() -> None:
    read = Request.read_holding(1, 100, 2)
    assert check_reply(read, Reply(1, 3, registers=(1, 2))) == (1, 2)
    for wrong in (
        Reply(2, 3, registers=(1, 2)),
        Reply(1, 4, registers=(1, 2)),
        Reply(1, 3, registers=(1,)),
    ):
        with pytest.raises(ModbusFrameError):
            check_reply(read, wrong)
    write = Request.write_multiple(1, 1000, (1, 2, 3))
    assert check_reply(write, Reply(1, 16, address=1000, count=3)) == ()
    with pytest.raises(ModbusFrameError):
        check_reply(write, Reply(1, 16, address=1000, count=2))
    with pytest.raises(ModbusException) as busy:
        check_reply(write, Reply(1, 16, exception_code=6))
    assert busy.value.exception_code is ExceptionCode.DEVICE_BUSY
    assert not busy.value.outcome_unknown
    with pytest.raises(ModbusException) as gateway:
        check_reply(read, Reply(1, 3, exception_code=0x0B))
    assert gateway.value.outcome_unknown  # the gateway's target did not answer: unknown
    with pytest.raises(ModbusException) as odd:
        check_reply(read, Reply(1, 3, exception_code=0x42))
    assert odd.value.exception_code == 0x42


def test_serial_timing() -> None:
    even = SerialSettings("/dev/ttyS0", 9600)
    assert even.bits_per_char == 11
    assert even.silence == pytest.approx(3.5 * 11 / 9600)
    assert SerialSettings("/dev/ttyS0", 9600, parity=Parity.NONE, stopbits=2).bits_per_char == 11
    assert SerialSettings("/dev/ttyS0", 115200).silence == pytest.approx(0.00175)
    with pytest.raises(ValueError):
        SerialSettings("/dev/ttyS0", 9600, bytesize=5)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([3, 4]),
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125),
)
def test_register_replies_decode_as_pymodbus_decodes_them(function: int, regs: list[int]) -> None:
    pdu = registers_pdu(function, regs)
    ours = decode_read_reply(3, pdu)
    assert ours == decode_with_pymodbus(DecodePDU(is_server=False), 3, pdu)
    assert ours is not None and ours.registers == tuple(regs)


@pytest.mark.parametrize(
    "pdu",
    [
        bytes([4, 3, 0, 1, 2]),  # odd byte count
        bytes([4, 4, 0, 1]),  # fewer bytes than the count says
        bytes([4, 2, 0, 1, 9]),  # more
        bytes([4, 0]),  # no registers
    ],
)
def test_malformed_register_replies_are_bad_pdus(pdu: bytes) -> None:
    assert decode_read_reply(1, pdu) is None
    assert decode_read_reply(1, pdu[:1]) is None  # no byte count at all
    assert MbapCodec().feed(mbap(5, 1, pdu)) == [MbapBadPdu(5, 1)]
