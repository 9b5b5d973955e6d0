"""The form codec, field formats and request builders."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from channels.unionpay import (
    APP_TRANS_PATH,
    BACK_TRANS_PATH,
    FILE_TRANS_PATH,
    QUERY_TRANS_PATH,
    AcpError,
    TxnType,
    build_file_download,
    build_follow_up,
    build_hold,
    build_query,
    check_order_id,
    decode_form,
    encode_form,
    format_amount,
    format_txn_time,
    parse_amount,
    parse_txn_time,
)
from tests.channels.unionpay.support import MER_ID


def test_form_round_trip_keeps_every_character() -> None:
    fields = {
        "signature": "ab+/cd==",
        "orderDesc": "92号汽油&加满=好",
        "signPubKeyCert": "-----BEGIN CERTIFICATE-----\r\nMIIB+/==\r\n-----END CERTIFICATE-----",
        "empty": "",
    }
    body = encode_form(fields)
    assert body.isascii()
    assert decode_form(body) == fields


def test_a_duplicated_field_is_refused() -> None:
    with pytest.raises(AcpError) as info:
        decode_form(b"txnAmt=1&merId=2&txnAmt=10000")
    assert info.value.reason == "duplicate_field"


@pytest.mark.parametrize("body", [b"a=1&&b=2", b"novalue", b"a=%FF%FE", b"\xff\xfe=1"])
def test_a_malformed_form_is_refused(body: bytes) -> None:
    with pytest.raises(AcpError) as info:
        decode_form(body)
    assert info.value.reason == "bad_form"


def test_too_many_fields_is_refused() -> None:
    body = "&".join(f"f{i}=1" for i in range(500)).encode()
    with pytest.raises(AcpError) as info:
        decode_form(body)
    assert info.value.reason == "bad_form"


def test_an_empty_body_has_no_fields() -> None:
    assert decode_form(b"") == {}


@pytest.mark.parametrize("order_id", ["FS2026112000", "a" * 40, "12345678"])
def test_good_order_ids(order_id: str) -> None:
    assert check_order_id(order_id) == order_id


@pytest.mark.parametrize(
    "order_id", ["FS-20261120", "FS_2026112000", "short", "a" * 41, "订单号12345"]
)
def test_bad_order_ids(order_id: str) -> None:
    with pytest.raises(AcpError):
        check_order_id(order_id)


def test_amounts_are_integer_fen() -> None:
    assert format_amount(1) == "1"
    assert parse_amount("000120") == 120
    for bad in (0, -1, 10**12, True):
        with pytest.raises(AcpError):
            format_amount(bad)
    for text in ("", "1.00", "-5", " 1", "1e3"):
        with pytest.raises(AcpError):
            parse_amount(text)


def test_txn_time_is_beijing_time() -> None:
    assert format_txn_time(datetime(2026, 11, 20, 15, 59, 59, tzinfo=UTC)) == "20261120235959"
    assert format_txn_time(datetime(2026, 11, 20, 16, 0, 0, tzinfo=UTC)) == "20261121000000"
    assert format_txn_time(datetime(2026, 11, 20, 8, 1, 2)) == "20261120080102"  # naive: as is
    parsed = parse_txn_time("20261121000000")
    assert parsed == datetime(2026, 11, 20, 16, 0, 0, tzinfo=UTC)
    for bad in ("2026112000000", "20261320000000", "2026-11-20 00:0"):
        with pytest.raises(AcpError):
            parse_txn_time(bad)


def test_the_preauth_request() -> None:
    request = build_hold(
        TxnType.PREAUTH,
        mer_id=MER_ID,
        order_id="FS20261120000001",
        txn_time="20261120101500",
        amount_fen=20000,
        back_url="https://switch.example/callbacks/unionpay",
        pay_timeout="20261120103000",
    )
    assert request.path == APP_TRANS_PATH
    assert request.fields["txnType"] == "02"
    assert request.fields["txnSubType"] == "01"
    assert request.fields["txnAmt"] == "20000"
    assert request.fields["currencyCode"] == "156"
    assert request.fields["version"] == "5.1.0"
    assert request.fields["signMethod"] == "01"
    assert request.fields["payTimeout"] == "20261120103000"
    with pytest.raises(AcpError):
        build_hold(
            TxnType.REFUND,
            mer_id=MER_ID,
            order_id="FS20261120000001",
            txn_time="20261120101500",
            amount_fen=1,
            back_url="u",
        )


@pytest.mark.parametrize(
    ("txn_type", "code"),
    [
        (TxnType.PREAUTH_COMPLETE, "03"),
        (TxnType.PREAUTH_CANCEL, "32"),
        (TxnType.PREAUTH_COMPLETE_CANCEL, "33"),
        (TxnType.REFUND, "04"),
    ],
)
def test_follow_ups(txn_type: TxnType, code: str) -> None:
    request = build_follow_up(
        txn_type,
        mer_id=MER_ID,
        order_id="FS20261120000001C1",
        txn_time="20261120110000",
        amount_fen=15000,
        orig_qry_id="782611201015000000011",
        back_url="https://switch.example/callbacks/unionpay",
        reserved="FS20261120000001",
    )
    assert request.path == BACK_TRANS_PATH
    assert request.fields["txnType"] == code
    assert request.fields["txnSubType"] == "00"
    assert request.fields["origQryId"] == "782611201015000000011"
    assert request.fields["reqReserved"] == "FS20261120000001"


def test_a_follow_up_needs_the_original() -> None:
    with pytest.raises(AcpError):
        build_follow_up(
            TxnType.REFUND,
            mer_id=MER_ID,
            order_id="FS20261120000001R1",
            txn_time="20261120110000",
            amount_fen=1,
            orig_qry_id="",
            back_url="u",
            reserved="FS20261120000001",
        )


def test_queries_and_file_download() -> None:
    by_order = build_query(mer_id=MER_ID, txn_time="20261120101500", order_id="FS20261120000001")
    assert by_order.path == QUERY_TRANS_PATH
    assert by_order.fields["txnType"] == "00"
    assert by_order.fields["orderId"] == "FS20261120000001"
    by_ref = build_query(mer_id=MER_ID, txn_time="20261120101500", query_id="7826")
    assert by_ref.fields["queryId"] == "7826"
    assert "orderId" not in by_ref.fields
    with pytest.raises(AcpError):
        build_query(mer_id=MER_ID, txn_time="20261120101500")
    download = build_file_download(mer_id=MER_ID, txn_time="20261121093000", settle_date="1120")
    assert download.path == FILE_TRANS_PATH
    assert download.fields["txnType"] == "76"
    assert download.fields["settleDate"] == "1120"
    assert download.fields["fileType"] == "00"
    for bad in ("1320", "1100", "112", "2026-11-20"):
        with pytest.raises(AcpError):
            build_file_download(mer_id=MER_ID, txn_time="20261121093000", settle_date=bad)
