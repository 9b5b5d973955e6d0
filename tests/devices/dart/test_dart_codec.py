"""The DART codec without I/O: known CRCs from captured traffic, stuffing, every frame
kind, transactions both ways, and every kind of bad input refused with a clear reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.dart import (
    CD1,
    DC1,
    Alarm,
    AllowedNozzles,
    BadFrame,
    Command,
    DartCodecError,
    DartFrameError,
    Decimals,
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
    Unknown,
    bcd_decode,
    bcd_encode,
    crc16_arc,
    decode_from_pump,
    decode_one,
    decode_to_pump,
    encode,
    encode_block,
)


def test_crc_values_from_captured_traffic() -> None:
    assert crc16_arc(bytes.fromhex("5037010106")) == 0x2A1E
    assert crc16_arc(bytes.fromhex("5135010100")) == 0x50A2
    frame = encode(Frame(0x50, Kind.DATA, 7, bytes.fromhex("010106")))
    assert frame == bytes.fromhex("50 37 01 01 06 1E 2A 03 FA")
    assert encode(Frame(0x51, Kind.DATA, 5, bytes.fromhex("010100")))[-4:-2] == b"\xa2\x50"


def test_short_frames() -> None:
    assert encode(Frame(0x50, Kind.POLL)) == bytes.fromhex("50 20 FA")
    assert encode(Frame(0x5F, Kind.ACK, 3)) == bytes.fromhex("5F C3 FA")
    assert encode(Frame(0x50, Kind.NAK, 1)) == bytes.fromhex("50 51 FA")
    assert encode(Frame(0x50, Kind.EOT, 2)) == bytes.fromhex("50 72 FA")
    assert encode(Frame(0x50, Kind.ACKPOLL, 4)) == bytes.fromhex("50 E4 FA")
    for kind in (Kind.POLL, Kind.ACK, Kind.NAK, Kind.EOT, Kind.ACKPOLL):
        frame = Frame(0x6F, kind, 0 if kind is Kind.POLL else 9)
        assert decode_one(encode(frame)) == frame


def test_frames_that_cannot_be_built() -> None:
    with pytest.raises(DartFrameError, match="0x4f"):
        Frame(0x4F, Kind.POLL)
    with pytest.raises(DartFrameError, match="sequence"):
        Frame(0x50, Kind.ACK, 16)
    with pytest.raises(DartFrameError, match="DATA"):
        Frame(0x50, Kind.DATA, 0)
    with pytest.raises(DartFrameError, match="DATA"):
        Frame(0x50, Kind.POLL, 0, b"\x01")


def test_an_fa_in_data_or_crc_is_stuffed_and_unstuffed() -> None:
    # BCD never holds FA, but a length, a counter or the CRC may: any byte must pass.
    payload = bytes([0x65, 0x06, 0x01, 0xFA, 0xFA, 0x10, 0xFA, 0x00])
    frame = Frame(0x52, Kind.DATA, 1, payload)
    raw = encode(frame)
    assert raw.count(b"\x10\xfa") >= 3 and raw.endswith(b"\x03\xfa")
    decoder = FrameDecoder()
    assert decoder.feed(raw) == [frame]
    for i in range(1, len(raw)):  # byte by byte, any split point
        decoder = FrameDecoder()
        assert decoder.feed(raw[:i]) + decoder.feed(raw[i:]) == [frame]


@given(st.integers(0x50, 0x6F), st.integers(0, 15), st.binary(min_size=1, max_size=60))
def test_data_frames_round_trip(address: int, seq: int, payload: bytes) -> None:
    frame = Frame(address, Kind.DATA, seq, payload)
    assert FrameDecoder().feed(encode(frame)) == [frame]


def test_bad_frames_are_reported_with_their_reason_and_the_stream_goes_on() -> None:
    good = encode(Frame(0x50, Kind.DATA, 7, bytes.fromhex("010106")))
    bad_crc = good[:5] + b"\x1f" + good[6:]
    decoder = FrameDecoder()
    events = decoder.feed(bad_crc + encode(Frame(0x50, Kind.POLL)) + b"\x50\x90\xfa" + good)
    assert isinstance(events[0], BadFrame) and "CRC" in events[0].reason
    assert events[0].address == 0x50
    assert events[1] == Frame(0x50, Kind.POLL)
    assert isinstance(events[2], BadFrame) and "control byte" in events[2].reason
    assert events[3] == Frame(0x50, Kind.DATA, 7, bytes.fromhex("010106"))
    assert decoder.dropped_bytes == len(bad_crc) + 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x20\x20\xfa", "address"),
        (b"\x50\x20\x00\xfa", "POLL frame of 4 bytes"),
        (b"\x50\x23\xfa", "POLL with sequence"),
        (b"\x50\x31\x01\x03\xfa", "without CRC"),
        (b"\x50\x31\x01\x01\x06\x1e\x2a\x00\xfa", "without CRC and ETX"),
        (b"\x50\x31\x1e\x2a\x03\xfa", "without transactions"),
        (b"\xfa", "truncated"),
    ],
)
def test_malformed_frames(raw: bytes, reason: str) -> None:
    event = decode_one(raw)
    assert isinstance(event, BadFrame) and reason in event.reason


def test_a_frame_cut_short_by_silence_and_an_endless_one() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x50\x31\x01\x01") == []
    cut = decoder.silence()
    assert cut is not None and "silence" in cut.reason and decoder.buffered == 0
    assert decoder.silence() is None
    events = decoder.feed(b"\x50\x31" + b"\x00" * 600)
    assert isinstance(events[0], BadFrame) and "too long" in events[0].reason


def test_bcd() -> None:
    assert bcd_encode(1234, 2) == b"\x12\x34"
    assert bcd_encode(7, 3) == b"\x00\x00\x07"
    assert bcd_decode(b"\x00\x12\x34\x56") == 123456
    with pytest.raises(DartCodecError, match="does not fit"):
        bcd_encode(10_000, 2)
    with pytest.raises(DartCodecError, match="does not fit"):
        bcd_encode(-1, 2)
    with pytest.raises(DartCodecError, match="BCD"):
        bcd_decode(b"\x1a")


def test_decimals_convert_exactly_or_refuse() -> None:
    d = Decimals(volume=2, amount=2, price=2)
    assert d.to_ml(1234) == 12_340  # 12.34 L
    assert d.from_ml(12_340) == 1234
    assert d.to_price(799) == 799_000  # 7.99 yuan/L = 799,000 milli-fen/L
    assert d.from_price(799_000) == 799
    assert d.to_fen(5000) == 5000
    with pytest.raises(DartCodecError, match="whole number"):
        d.from_ml(12_345)
    with pytest.raises(DartCodecError, match="whole number"):
        d.from_price(799_500)
    with pytest.raises(DartCodecError, match="decimals"):
        Decimals(volume=4)


def test_controller_transactions_round_trip() -> None:
    block: list[Transaction] = [
        AllowedNozzles((1, 3)),
        PresetVolume(2000),
        PresetAmount(10_000),
        Prices((799, 845)),
        TotalsRequest(0x02),
        TotalsRequest(0x12),
        Command(CD1.AUTHORIZE),
    ]
    raw = encode_block(block)
    assert raw[:4] == b"\x02\x02\x01\x03"
    assert decode_to_pump(raw) == block


def test_pump_transactions_round_trip_and_unknown_ones_are_skipped_by_length() -> None:
    block: list[Transaction] = [
        Status(DC1.FILLING),
        Filling(1234, 987),
        NozzlePrice(799, 2, True),
        Alarm(3),
        Totals(0x01, 123_456_789, 98_765, 0),
        Totals(0x11, 98_765),
    ]
    raw = encode_block(block)
    assert raw[:3] == b"\x01\x01\x04"
    assert bytes.fromhex("03 04 00 07 99 12") in raw  # price 7.99, nozzle 2 out
    assert decode_from_pump(raw) == block
    strange = b"\x42\x03abc" + encode_block([Status(DC1.RESET)])
    assert decode_from_pump(strange) == [Unknown(0x42, b"abc"), Status(DC1.RESET)]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x01\x01\x03", "DC1 status 3"),
        (b"\x02\x04\x00\x00\x00\x01", "4 data bytes"),
        (b"\x01\x05\x01", "LNG 5"),
        (b"\x01", "cut short"),
        (b"\x65\x06\x20\x00\x00\x00\x00\x01", "counter 0x20"),
        (b"\x02\x08\x00\x00\x00\x1a\x00\x00\x00\x00", "BCD"),
    ],
)
def test_malformed_pump_blocks(raw: bytes, reason: str) -> None:
    with pytest.raises(DartCodecError, match=reason):
        decode_from_pump(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x01\x01\x07", "CD1 command 0x07"),
        (b"\x02\x01\x0a", "CD2"),
        (b"\x05\x02\x07\x99", "CD5 with 2 bytes"),
        (b"\x65\x01\x00", "CD101 counter"),
    ],
)
def test_malformed_controller_blocks(raw: bytes, reason: str) -> None:
    with pytest.raises(DartCodecError, match=reason):
        decode_to_pump(raw)
    with pytest.raises(DartCodecError, match="at least one"):
        encode_block([])
