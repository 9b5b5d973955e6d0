"""The simulator's MBAP fast paths: read requests and read replies, framed by hand, are
byte for byte what pymodbus decodes and builds (pymodbus still frames everything else)."""

from __future__ import annotations

import itertools

import pytest
from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU

from devices.modbus import FunctionCode, Reply, Request
from devices.sim.framing import Incoming, MbapServerCodec, read_request, to_pymodbus_reply
from tests.devices.modbus_support import mbap


@pytest.mark.parametrize(
    ("function", "address", "count"),
    list(itertools.product((3, 4), (0, 100, 1000, 0xFFFF - 125), (1, 57, 125))),
)
def test_a_read_request_decodes_as_pymodbus_decodes_it(
    function: int, address: int, count: int
) -> None:
    pdu = bytes([function]) + address.to_bytes(2, "big") + count.to_bytes(2, "big")
    ours = read_request(9, pdu)
    theirs = DecodePDU(is_server=True).decode(pdu)
    assert ours is not None and theirs is not None
    assert (ours.function, ours.address, ours.count) == (
        theirs.function_code,
        theirs.address,
        theirs.count,
    )
    assert ours == Request(9, FunctionCode(function), address, count)


@pytest.mark.parametrize(
    "pdu",
    [
        bytes([0x04, 0x00, 0x00, 0x00]),  # short
        bytes([0x04, 0x00, 0x00, 0x00, 0x39, 0x00]),  # long
        bytes([0x06, 0x03, 0xE8, 0x00, 0x01]),  # a write
        bytes([0x04, 0x00, 0x00, 0x00, 0x00]),  # 0 registers
        bytes([0x03, 0x00, 0x00, 0x00, 0x7E]),  # 126 registers
        bytes([0x04, 0xFF, 0xFF, 0x00, 0x02]),  # past 65535
    ],
)
def test_anything_else_is_left_to_the_general_path(pdu: bytes) -> None:
    assert read_request(1, pdu) is None


def test_repeated_polls_are_decoded_once_and_keep_their_transaction_ids() -> None:
    server = MbapServerCodec()
    status = bytes([0x04, 0x00, 0x00, 0x00, 0x39])
    stream = b"".join(mbap(tid, unit, status) for tid in (1, 2) for unit in (3, 4))
    events = server.feed(stream)
    assert all(isinstance(e, Incoming) for e in events)
    got = [(e.transaction_id, e.unit, e.function, e.request) for e in events]  # type: ignore[union-attr]
    assert got == [
        (tid, unit, 4, Request.read_input(unit, 0, 57)) for tid in (1, 2) for unit in (3, 4)
    ]
    (write,) = server.feed(mbap(5, 3, bytes([0x06, 0x04, 0xB0, 0x00, 0x01])))
    assert isinstance(write, Incoming) and write.request == Request.write_single(3, 1200, 1)


@pytest.mark.parametrize(
    ("function", "count", "tid"),
    list(itertools.product((3, 4), (1, 2, 57, 125), (0, 1, 0xFFFF))),
)
def test_a_read_reply_is_framed_as_pymodbus_frames_it(function: int, count: int, tid: int) -> None:
    reply = Reply(17, function, registers=tuple((7919 * i) & 0xFFFF for i in range(count)))
    pymodbus = FramerSocket(DecodePDU(is_server=True)).buildFrame(to_pymodbus_reply(reply, tid))
    assert MbapServerCodec().encode(tid, reply) == pymodbus


def test_exception_and_write_replies_are_framed_by_pymodbus() -> None:
    codec, framer = MbapServerCodec(), FramerSocket(DecodePDU(is_server=True))
    for reply in (
        Reply(2, 4, exception_code=2),
        Reply(2, 16, address=1000, count=11),
        Reply(2, 6, registers=(5,), address=1200, count=1),
    ):
        assert codec.encode(9, reply) == framer.buildFrame(to_pymodbus_reply(reply, 9))
