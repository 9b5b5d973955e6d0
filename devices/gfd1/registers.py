"""The GFD-1 register map as data: every field's address and width, block by block.

Input registers (FC 04) are read in three blocks: the status block (IR 0-56, one FC04
per poll), the totals block (IR 100-163, before authorizing and after completion) and
the configuration block (IR 200-217). The command block (HR 1000-1010) is written with
one FC16, which the device applies atomically; staged prices are HR 1100-1115 and the
settings HR 1200-1203. 32- and 64-bit values span 2 and 4 registers, high word first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAP_VERSION: Final = 1
MAX_NOZZLES: Final = 8


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    address: int
    words: int  # 1, 2 or 4 registers


STATUS_START: Final = 0
STATUS_FIELDS: Final = (
    Field("map_version", 0, 1),
    Field("fp_state", 1, 1),
    Field("flags", 2, 1),
    Field("active_nozzle", 3, 1),
    Field("nozzle_out_mask", 4, 1),
    Field("error_code", 5, 1),
    Field("cur_sale_seq", 6, 2),
    Field("cur_volume_ml", 8, 2),
    Field("cur_amount_fen", 10, 2),
    Field("cur_unit_price", 12, 2),
    Field("flow_rate_ml_min", 14, 2),
    Field("cur_auth_token", 16, 2),
    Field("cmd_ack_seq", 18, 1),
    Field("cmd_result", 19, 1),
    Field("cmd_ack_code", 20, 1),
    Field("heartbeat", 21, 1),
    Field("boot_count", 22, 2),
    Field("unpaid_count", 24, 1),
    Field("price_set_id", 25, 1),
    Field("last_sale_seq", 32, 2),
    Field("last_sale_nozzle", 34, 1),
    Field("last_sale_end_reason", 35, 1),
    Field("last_sale_volume_ml", 36, 2),
    Field("last_sale_amount_fen", 38, 2),
    Field("last_sale_unit_price", 40, 2),
    Field("last_sale_start_volume_total_ml", 42, 4),
    Field("last_sale_end_volume_total_ml", 46, 4),
    Field("last_sale_auth_token", 50, 2),
    Field("last_sale_preset_type", 52, 1),
    Field("last_sale_preset_value", 53, 2),
    Field("last_sale_price_set_id", 55, 1),
    Field("last_sale_state", 56, 1),
)
STATUS_COUNT: Final = 57  # IR 0-56 in one FC04

TOTALS_START: Final = 100
TOTALS_STRIDE: Final = 8  # per nozzle: volume total (4 words) then amount total (4 words)
TOTALS_COUNT: Final = TOTALS_STRIDE * MAX_NOZZLES

CONFIG_START: Final = 200
CONFIG_COUNT: Final = 18  # NOZZLE_COUNT, GRADE_OF_NOZZLE_1..8, a spare word, IDENTITY (8 words)
IDENTITY_OFFSET: Final = 10
IDENTITY_WORDS: Final = 8

COMMAND_START: Final = 1000
COMMAND_FIELDS: Final = (
    Field("seq", 1000, 1),
    Field("code", 1001, 1),
    Field("nozzle_mask", 1002, 1),
    Field("preset_type", 1003, 1),
    Field("preset_value", 1004, 2),
    Field("auth_token", 1006, 2),
    Field("sale_seq", 1008, 2),
    Field("price_set_id", 1010, 1),
)
COMMAND_COUNT: Final = 11

PRICES_START: Final = 1100  # PRICE_NOZZLE_n at 1100 + 2(n-1), 2 words each
PRICES_COUNT: Final = 2 * MAX_NOZZLES

SETTINGS_START: Final = 1200
SETTINGS_FIELDS: Final = (
    Field("host_watchdog_s", 1200, 1),
    Field("max_unpaid", 1201, 1),
    Field("auth_timeout_s", 1202, 1),
    Field("mode", 1203, 1),
)
SETTINGS_COUNT: Final = 4
