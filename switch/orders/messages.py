"""What goes into an OrderActor.

=====================  ==================================================================
call Cancel            the order's state after the request was taken (cancelling is
                       asynchronous: it ends in ``cancelled``, or in ``completed`` when
                       fuel already flowed); refused with ``Conflict`` past fuelling
call RequestRefund     :class:`~switch.service.RefundView`; ``Conflict`` when more than
                       what is captured and not yet refunded is asked for
cast PaymentUpdate     an attempt of this order moved (a callback was applied)
cast Wake              look again: the sweeper found something of this order unresolved
call Wake              the same, answered with the state once the order has to wait
cast PumpEvent         from the pump this order subscribed to (devices.pump_messages)
info Tick              the actor's own timer
=====================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Cancel", "PaymentUpdate", "RequestRefund", "Tick", "Wake"]


@dataclass(frozen=True, slots=True)
class Cancel:
    by: str  # customer id, staff id, or "switch"


@dataclass(frozen=True, slots=True)
class RequestRefund:
    amount_fen: int
    reason: str
    request_key: str  # the API's Idempotency-Key: the same request never refunds twice
    by: str


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    key: str


@dataclass(frozen=True, slots=True)
class Wake:
    reason: str = "sweeper"


@dataclass(frozen=True, slots=True)
class Tick:
    generation: int
