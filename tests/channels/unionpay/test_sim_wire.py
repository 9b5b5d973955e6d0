"""The simulator's sans-IO pieces: clearing days, fees, ZM lines, and its signatures."""

from __future__ import annotations

from datetime import date, datetime

from channels.sim.unionpay_bill import fee_fen, file_content, pack_line
from channels.sim.unionpay_wire import AcpSigner, clearing_date
from channels.unionpay import (
    BEIJING,
    ZM_LINE_BYTES,
    SignCertVerifier,
    SignPolicy,
    TestPki,
    parse_file_content,
    split_line,
    verify_message,
)
from tests.channels.unionpay.support import MER_ID, notify_fields


def _at(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING).timestamp()


def test_the_clearing_day_turns_at_23_beijing_time() -> None:
    assert clearing_date(_at("2026-11-19 22:59:59")) == date(2026, 11, 19)
    assert clearing_date(_at("2026-11-19 23:00:00")) == date(2026, 11, 20)
    assert clearing_date(_at("2026-12-31 23:30:00")) == date(2027, 1, 1)


def test_fees_round_half_up_to_the_fen() -> None:
    assert fee_fen(12345) == 74  # 74.07
    assert fee_fen(250) == 2  # 1.5 → 2
    assert fee_fen(83) == 0  # 0.498
    assert fee_fen(100_000, rate_ppm=3800) == 380


def test_a_packed_line_parses_back_and_long_names_are_cut_between_characters() -> None:
    values: dict[str, str | int] = {
        "txn_code": "S30",
        "trace_time": "1120093015",
        "txn_amt": 18000,
        "query_id": "782611200930150000011",
        "order_id": "FS20261120000001C1",
        "mer_fee": -108,
        "settle_amt": 18000,
        "txn_type": "03",
        "mer_id": MER_ID,
        "mer_abbr": "A中国石油化工股份有限公司北京石油分公司第一加油站",  # over 40 bytes
        "reserved": "FS20261120000001",
        "settle_date": "1120",
    }
    line = pack_line(values)
    assert len(line) == ZM_LINE_BYTES
    fields = split_line(line)
    assert fields["mer_fee"] == "D000000000108"
    assert fields["settle_amt"] == "C000000018000"
    # 39 bytes: one more character would be 41, half of it would be a broken byte
    assert fields["mer_abbr"] == "A中国石油化工股份有限公司北京石油分公司"
    assert fields["reserved"] == "FS20261120000001"
    bill = parse_file_content(file_content({f"INN26112088ZM_{MER_ID}": line}), date(2026, 11, 20))
    (row,) = bill.rows
    assert (row.amount_fen, row.fee_mfen, row.out_trade_no) == (18000, 108000, "FS20261120000001")


def test_the_signer_puts_its_certificate_in_the_message(pki: TestPki) -> None:
    signer = AcpSigner(pki.signing)
    message = signer.sign({**notify_fields(), "certId": "123", "signature": "old"})
    assert "certId" not in message
    assert message["signPubKeyCert"] == pki.signing.cert_pem().decode()
    verify_message(message, SignCertVerifier(pki.anchors), datetime.now().timestamp(), SignPolicy())
