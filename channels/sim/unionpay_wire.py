"""UnionPay's side of the wire, sans-IO: its transactions, how it describes them, how it signs.

The simulator answers queries and sends notifies from a :class:`SimTxn` through
:func:`txn_fields`, and signs everything with :class:`AcpSigner` (its current signing key, with
the certificate in ``signPubKeyCert``). The callback-case tests build their good and their
deliberately broken notifies with the same functions, so a test that breaks one field breaks it
in a message that is otherwise exactly what the simulator sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from channels.sim.ledger import Trade
from channels.unionpay import (
    BEIJING,
    BIZ_TYPE,
    CURRENCY_CNY,
    SIGN_METHOD_RSA,
    SUB_TYPE,
    VERSION,
    IssuedCert,
    TxnType,
    signed,
)

__all__ = [
    "RESP_MSG",
    "AcpSigner",
    "SimTxn",
    "beijing",
    "clearing_date",
    "notify_fields",
    "query_fields",
    "txn_fields",
]

# respCode → respMsg, as UnionPay words them (the subset the simulator uses)
RESP_MSG: Mapping[str, str] = {
    "00": "成功[0000000]",
    "05": "交易已受理,请稍后查询交易结果",
    "10": "报文格式错误",
    "11": "验证签名失败",
    "12": "重复交易",
    "13": "报文交易要素缺失",
    "31": "商户状态不正确",
    "32": "无此交易权限",
    "33": "交易金额超限",
    "34": "查无此交易",
    "35": "原交易不存在或状态不正确",
    "36": "与原交易信息不符",
    "64": "卡上的余额不足",
    "69": "您的输入超时",
    "98": "文件不存在",
}
ACC_NO = "6216****0001"  # the masked card of the simulated payer
CLEARING_CUTOFF = timedelta(hours=1)  # the clearing day turns at 23:00 Beijing time


def beijing(t: float) -> datetime:
    return datetime.fromtimestamp(t, BEIJING)


def clearing_date(t: float) -> date:
    """UnionPay's clearing day of a transaction done at Unix time ``t``: 23:00 Beijing time
    on the 19th already belongs to the 20th."""
    return (beijing(t) + CLEARING_CUTOFF).date()


@dataclass(slots=True)
class SimTxn:
    """One ACP transaction (each with its own orderId), mutable as UnionPay processes it."""

    mer_id: str
    order_id: str
    txn_type: TxnType
    txn_time: str
    amount_fen: int
    query_id: str
    trade: Trade
    back_url: str
    created_at: float
    resp_code: str = "05"
    orig: SimTxn | None = None  # the transaction a follow-up refers to
    reserved: str = ""
    pay_timeout: str = ""
    trace_no: str = ""
    done_at: float | None = None  # when it succeeded or failed (trace time, clearing day)
    params: dict[str, str] = field(default_factory=dict)  # the request, signature left out

    @property
    def resp_msg(self) -> str:
        return RESP_MSG.get(self.resp_code, "交易失败")

    @property
    def pending(self) -> bool:
        return self.resp_code == "05"


def txn_fields(txn: SimTxn) -> dict[str, str]:
    """The fields that describe a transaction (unsigned, without respCode)."""
    fields = {
        "version": VERSION,
        "encoding": "UTF-8",
        "signMethod": SIGN_METHOD_RSA,
        "txnType": txn.txn_type.value,
        "txnSubType": SUB_TYPE[txn.txn_type],
        "bizType": BIZ_TYPE[txn.txn_type],
        "accessType": "0",
        "merId": txn.mer_id,
        "orderId": txn.order_id,
        "txnTime": txn.txn_time,
        "txnAmt": str(txn.amount_fen),
        "currencyCode": CURRENCY_CNY,
        "queryId": txn.query_id,
        "accNo": ACC_NO,
        "payCardType": "01",
    }
    if txn.orig is not None:
        fields["origQryId"] = txn.orig.query_id
    if txn.reserved:
        fields["reqReserved"] = txn.reserved
    if txn.done_at is not None:
        done = beijing(txn.done_at)
        fields.update(
            traceNo=txn.trace_no,
            traceTime=f"{done:%m%d%H%M%S}",
            settleAmt=str(txn.amount_fen),
            settleCurrencyCode=CURRENCY_CNY,
            settleDate=f"{clearing_date(txn.done_at):%m%d}",
        )
    return fields


def notify_fields(txn: SimTxn) -> dict[str, str]:
    """A back notify of the transaction's result (unsigned)."""
    return {**txn_fields(txn), "respCode": txn.resp_code, "respMsg": txn.resp_msg}


def query_fields(txn: SimTxn) -> dict[str, str]:
    """A successful queryTrans reply about the transaction (unsigned)."""
    return {
        **txn_fields(txn),
        "respCode": "00",
        "respMsg": RESP_MSG["00"],
        "origRespCode": txn.resp_code,
        "origRespMsg": txn.resp_msg,
    }


@dataclass(frozen=True, slots=True)
class AcpSigner:
    """UnionPay signing with one signing certificate (rotation replaces the signer)."""

    signing: IssuedCert

    def sign(self, fields: Mapping[str, str]) -> dict[str, str]:
        out = {k: v for k, v in fields.items() if k not in ("signature", "certId")}
        out["signMethod"] = SIGN_METHOD_RSA
        out["signPubKeyCert"] = self.signing.cert_pem().decode("ascii")
        return signed(out, self.signing.key)
