"""The GFD-1 codec without I/O: known register images, round trips, and refused garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.gfd1 import (
    COMMAND_COUNT,
    CONFIG_COUNT,
    STATUS_COUNT,
    TOTALS_COUNT,
    CodecError,
    Command,
    CommandBlock,
    CommandResult,
    EndReason,
    ErrorCode,
    Flag,
    FPState,
    Mode,
    NozzleTotals,
    PointConfig,
    PointSettings,
    PresetType,
    SaleRecord,
    SaleState,
    StatusBlock,
    decode_command,
    decode_config,
    decode_prices,
    decode_settings,
    decode_status,
    decode_totals,
    encode_command,
    encode_config,
    encode_prices,
    encode_settings,
    encode_status,
    encode_totals,
)
from devices.gfd1.codec import _encode_status_by_field
from devices.gfd1.layout import Layout, LayoutError
from devices.gfd1.registers import Field

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, 2**64 - 1)

SALE = SaleRecord(
    seq=70001,
    nozzle=2,
    end_reason=EndReason.PRESET_REACHED,
    volume_ml=38_462,
    amount_fen=30_000,
    unit_price=780_000,
    start_volume_total_ml=2**40 + 5,
    end_volume_total_ml=2**40 + 5 + 38_462,
    auth_token=0xDEADBEEF,
    preset_type=PresetType.AMOUNT,
    preset_value=30_000,
    price_set_id=7,
    state=SaleState.PAYABLE,
)


def status(**changes: object) -> StatusBlock:
    base = {
        "map_version": 1,
        "fp_state": FPState.COMPLETED,
        "flags": Flag.TOTALS_VALID | Flag.PRESET_ACTIVE,
        "active_nozzle": 2,
        "nozzle_out_mask": 0b10,
        "error_code": ErrorCode.NONE,
        "cur_sale_seq": 70001,
        "cur_volume_ml": 38_462,
        "cur_amount_fen": 30_000,
        "cur_unit_price": 780_000,
        "flow_rate_ml_min": 0,
        "cur_auth_token": 0xDEADBEEF,
        "cmd_ack_seq": 41,
        "cmd_result": CommandResult.OK,
        "cmd_ack_code": int(Command.AUTHORIZE),
        "heartbeat": 65535,
        "boot_count": 3,
        "unpaid_count": 1,
        "price_set_id": 7,
        "last_sale": SALE,
    }
    base.update(changes)
    return StatusBlock(**base)  # type: ignore[arg-type]


def test_status_block_register_image_follows_the_map() -> None:
    regs = encode_status(status())
    assert len(regs) == STATUS_COUNT == 57
    assert regs[0] == 1  # MAP_VERSION
    assert regs[1] == 10  # FP_STATE COMPLETED
    assert regs[2] == 0b1000100  # flags b2 preset active, b6 totals valid
    assert regs[6:8] == [1, 70001 - 65536]  # CUR_SALE_SEQ, high word first
    assert regs[12:14] == [780_000 >> 16, 780_000 & 0xFFFF]
    assert regs[16:18] == [0xDEAD, 0xBEEF]  # CUR_AUTH_TOKEN
    assert regs[18:22] == [41, 0, 1, 65535]
    assert regs[26:32] == [0] * 6  # reserved
    assert regs[32:34] == [1, 70001 - 65536]  # LAST_SALE_SEQ
    assert regs[35] == 2  # end reason: preset reached
    assert regs[42:46] == [0, 256, 0, 5]  # 64-bit start total
    assert regs[50:52] == [0xDEAD, 0xBEEF]
    assert regs[56] == 2  # PAYABLE
    assert decode_status(regs) == status()


def test_an_empty_payable_buffer_decodes_to_no_last_sale() -> None:
    regs = encode_status(status(last_sale=None, fp_state=FPState.IDLE))
    assert regs[32:57] == [0] * 25
    assert decode_status(regs).last_sale is None


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (0, 2, "map version"),
        (1, 0, "fp_state"),
        (1, 11, "fp_state"),
        (5, 9, "error_code"),
        (19, 6, "cmd_result"),
        (35, 7, "end_reason"),
        (52, 3, "preset_type"),
        (56, 1, "last_sale_state"),
        (34, 9, "nozzle 9"),
        (3, 9, "active nozzle"),
    ],
)
def test_impossible_status_values_are_codec_errors(index: int, value: int, message: str) -> None:
    regs = encode_status(status())
    regs[index] = value
    with pytest.raises(CodecError, match=message):
        decode_status(regs)


def test_malformed_register_lists_are_codec_errors() -> None:
    good = encode_status(status())
    for bad in (good[:-1], [*good, 0], [*good[:-1], 65536], [*good[:-1], -1]):
        with pytest.raises(CodecError):
            decode_status(bad)
    regs = list(good)
    regs[46:50] = [0, 0, 0, 0]  # end total below start total
    with pytest.raises(CodecError, match="below its start"):
        decode_status(regs)


@settings(max_examples=150, deadline=None)
@given(
    st.builds(
        StatusBlock,
        map_version=st.just(1),
        fp_state=st.sampled_from(FPState),
        flags=st.integers(0, 0x1FF).map(Flag),
        active_nozzle=st.integers(0, 8),
        nozzle_out_mask=st.integers(0, 0xFF),
        error_code=st.sampled_from(ErrorCode),
        cur_sale_seq=u32,
        cur_volume_ml=u32,
        cur_amount_fen=u32,
        cur_unit_price=u32,
        flow_rate_ml_min=u32,
        cur_auth_token=u32,
        cmd_ack_seq=u16,
        cmd_result=st.sampled_from(CommandResult),
        cmd_ack_code=u16,
        heartbeat=u16,
        boot_count=u32,
        unpaid_count=u16,
        price_set_id=u16,
        last_sale=st.none()
        | st.builds(
            SaleRecord,
            seq=st.integers(1, 0xFFFFFFFF),
            nozzle=st.integers(1, 8),
            end_reason=st.sampled_from(EndReason),
            volume_ml=u32,
            amount_fen=u32,
            unit_price=u32,
            start_volume_total_ml=st.integers(0, 2**63),
            end_volume_total_ml=st.integers(2**63, 2**64 - 1),
            auth_token=u32,
            preset_type=st.sampled_from(PresetType),
            preset_value=u32,
            price_set_id=u16,
            state=st.sampled_from([SaleState.PAYABLE, SaleState.LOCKED]),
        ),
    )
)
def test_status_round_trips(block: StatusBlock) -> None:
    regs = encode_status(block)
    assert decode_status(regs) == block
    assert regs == _encode_status_by_field(block)  # the one-struct path and the slow one agree


@settings(max_examples=100, deadline=None)
@given(st.lists(st.builds(NozzleTotals, u64, u64), min_size=1, max_size=8))
def test_totals_round_trip_and_are_64_bit_high_word_first(totals: list[NozzleTotals]) -> None:
    regs = encode_totals(totals)
    assert len(regs) == TOTALS_COUNT
    assert decode_totals(regs, len(totals)) == tuple(totals)
    first = totals[0].volume_ml
    assert regs[0:4] == [(first >> s) & 0xFFFF for s in (48, 32, 16, 0)]


def test_values_that_do_not_fit_are_refused_on_encode() -> None:
    with pytest.raises(CodecError, match="does not fit"):
        encode_totals([NozzleTotals(2**64, 0)])
    with pytest.raises(CodecError, match="does not fit"):
        encode_status(status(cur_volume_ml=2**32))
    with pytest.raises(CodecError, match="does not fit"):
        encode_command(CommandBlock(seq=70000, code=Command.STOP))
    with pytest.raises(CodecError, match="needs a preset type"):
        encode_command(CommandBlock(seq=1, code=Command.AUTHORIZE, preset_value=10))


def test_command_block_register_image() -> None:
    cmd = CommandBlock(
        seq=42,
        code=Command.AUTHORIZE,
        nozzle_mask=0b0110,
        preset_type=PresetType.AMOUNT,
        preset_value=30_000,
        auth_token=0x12345678,
        sale_seq=0,
        price_set_id=7,
    )
    regs = encode_command(cmd)
    assert len(regs) == COMMAND_COUNT == 11
    assert regs == [42, 1, 6, 2, 0, 30_000, 0x1234, 0x5678, 0, 0, 7]
    assert decode_command(regs) == cmd


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        CommandBlock,
        seq=u16,
        code=st.sampled_from(Command),
        nozzle_mask=st.integers(0, 0xFF),
        preset_type=st.sampled_from(PresetType),
        preset_value=u32,
        auth_token=u32,
        sale_seq=u32,
        price_set_id=u16,
    ).filter(lambda c: c.preset_type is not PresetType.NONE or c.preset_value == 0)
)
def test_commands_round_trip(cmd: CommandBlock) -> None:
    assert decode_command(encode_command(cmd)) == cmd


def test_unknown_command_codes_are_refused() -> None:
    regs = encode_command(CommandBlock(seq=1, code=Command.STOP))
    regs[1] = 13
    with pytest.raises(CodecError, match="command code"):
        decode_command(regs)


def test_prices_config_and_settings() -> None:
    assert encode_prices([780_000, 835_000]) == [11, 59_104, 12, 48_568]
    assert decode_prices(encode_prices([780_000, 835_000])) == (780_000, 835_000)
    with pytest.raises(CodecError, match="positive"):
        encode_prices([0])
    config = PointConfig(nozzle_count=3, grades=(92, 95, 0), identity="GFD1-S001-FP03")
    regs = encode_config(config)
    assert len(regs) == CONFIG_COUNT
    assert regs[0] == 3
    assert regs[10] == int.from_bytes(b"GF", "big")
    assert decode_config(regs) == config
    with pytest.raises(CodecError, match="16 characters"):
        encode_config(PointConfig(1, (92,), "x" * 17))
    regs[0] = 9
    with pytest.raises(CodecError, match="nozzle count"):
        decode_config(regs)
    settings_ = PointSettings(
        host_watchdog_s=30, max_unpaid=2, auth_timeout_s=90, mode=Mode.STAND_ALONE
    )
    assert encode_settings(settings_) == [30, 2, 90, 1]
    assert decode_settings([30, 2, 90, 1]) == settings_
    with pytest.raises(CodecError, match="mode"):
        decode_settings([0, 0, 0, 2])


def test_a_layout_unpacks_its_field_table_in_one_struct() -> None:
    fields = (Field("a", 10, 1), Field("b", 12, 2), Field("c", 14, 4))  # register 11 unused
    layout = Layout(fields, 10, 20)
    regs = [7, 0xFFFF, 1, 2, 0, 0, 0, 3, *[0] * 12]
    assert layout.unpack(regs) == (7, 0x10002, 3)
    assert layout.names == ("a", "b", "c")
    with pytest.raises(LayoutError, match="expected 20 registers"):
        layout.unpack(regs[:-1])
    with pytest.raises(LayoutError, match="65536 is not a 16-bit word"):
        layout.unpack([65536, *regs[1:]])
    with pytest.raises(ValueError, match="address order"):
        Layout(tuple(reversed(fields)), 10, 20)
    with pytest.raises(ValueError, match="overlaps"):
        Layout((Field("a", 10, 2), Field("b", 11, 1)), 10, 20)
    with pytest.raises(ValueError, match="past the end"):
        Layout(fields, 10, 5)


def test_a_layout_packs_field_values_into_registers_in_one_struct() -> None:
    fields = (Field("a", 10, 1), Field("b", 12, 2), Field("c", 14, 4))  # register 11 unused
    layout = Layout(fields, 10, 20)
    regs = layout.pack((7, 0x10002, 3))
    assert regs == (7, 0, 1, 2, 0, 0, 0, 3, *[0] * 12)
    assert layout.unpack(regs) == (7, 0x10002, 3)
    with pytest.raises(LayoutError, match="does not fit"):
        layout.pack((0x10000, 0, 0))
    with pytest.raises(LayoutError, match="does not fit"):
        layout.pack((1, 2))


def test_sale_words_are_not_judged_when_the_payable_buffer_is_empty() -> None:
    regs = encode_status(status(last_sale=None, fp_state=FPState.IDLE))
    regs[35] = 99  # a stale end reason behind LAST_SALE_SEQ = 0 means nothing
    assert decode_status(regs).last_sale is None
