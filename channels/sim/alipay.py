"""The simulated Alipay open platform: ``/gateway.do``, bill downloads, the payer, the keys.

``AlipaySim`` is the framework's face of the Alipay simulator; the gateway's logic lives in
``alipay_gateway`` (verification, dispatch), ``alipay_trades`` and ``alipay_fundauth`` (the
methods), ``alipay_notify`` (notifies) and ``alipay_bill`` (the bill archive), all signing with
the switch's own Alipay core (``channels.alipay``) in the provider's role.

The payer (control API ``/customer``): on a pre-authorization "pay" confirms the freeze
(AUTHORIZED, ``fund_auth_freeze`` notify), "decline" closes it (no notify: Alipay announces frozen
funds, not refusals), "abandon" leaves it waiting. On a mini-program trade "pay" pays it
(TRADE_SUCCESS notify) and "decline" closes it (TRADE_CLOSED notify).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.alipay.credentials import generate, load_provider, merchant_dir, rotate_alipay_key
from channels.alipay.requests import FUND_FREEZE, TRADE_CREATE
from channels.model import Provider
from channels.sim.alipay_book import AlipayBook
from channels.sim.alipay_fundauth import confirm, decline
from channels.sim.alipay_gateway import handle_gateway
from channels.sim.alipay_trades import close_unpaid, pay
from channels.sim.base import CustomerError, ProviderSim, SimContext, SimMerchant

__all__ = ["AlipaySim"]

log = structlog.get_logger(__name__)

MAX_REQUEST_BYTES = 256 * 1024


class AlipaySim(ProviderSim):
    provider = Provider.ALIPAY

    def __init__(self, ctx: SimContext) -> None:
        super().__init__(ctx)
        self.book = AlipayBook(ctx, load_provider(ctx.keys_dir))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/gateway.do", self._gateway, methods=["GET", "POST"]),
                Route("/bills/{name}", self._bill, methods=["GET"]),
            ]
        )

    async def _gateway(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_REQUEST_BYTES:
            return Response(b"request too large", status_code=413, media_type="text/plain")
        call, answer = await handle_gateway(self.book, request.url.query.encode(), body)
        if call is not None and call.method in (FUND_FREEZE, TRADE_CREATE):
            key = str(call.biz.get("out_order_no") or call.biz.get("out_trade_no") or "")
            trade = self.ctx.ledger.get(self.provider, call.merchant.merchant_id, key)
            if trade is not None and trade.state in ("INIT", "WAIT_BUYER_PAY"):
                self.after_hold(call.merchant.merchant_id, key)
        charset = call.charset if call is not None else "utf-8"
        return Response(answer, media_type=f"text/html;charset={charset}")

    async def _bill(self, request: Request) -> Response:
        token = str(request.path_params["name"]).removesuffix(".csv.zip")
        data = self.book.bills.get(token)
        if data is None:
            return Response(b"not found", status_code=404, media_type="text/plain")
        headers = {"content-disposition": f'attachment; filename="{token}.csv.zip"'}
        return Response(data, media_type="application/oct-stream", headers=headers)

    async def customer(self, merchant_id: str, key: str, action: str) -> dict[str, Any]:
        book = self.book
        trade = book.order(merchant_id, key) or book.trade(merchant_id, key)
        if trade is None:
            raise CustomerError(404, "not_found", f"no Alipay order {key!r}")
        async with self.ctx.ledger.lock(trade):
            detail = book.detail(trade)
            if trade.kind == "preauth":
                if trade.state != "INIT":
                    raise CustomerError(409, "wrong_state", f"the order is {trade.state}")
                if action == "pay":
                    confirm(book, trade)
                elif action == "decline":
                    decline(book, trade)
            else:
                if detail.trade_status != "WAIT_BUYER_PAY":
                    raise CustomerError(409, "wrong_state", f"the trade is {detail.trade_status}")
                if action == "pay":
                    pay(book, trade)
                elif action == "decline":
                    close_unpaid(book, trade)
        log.info("sim.alipay_customer", key=key, action=action, state=trade.state)
        return {
            "provider": self.provider.value,
            "merchant_id": merchant_id,
            "key": key,
            "action": action,
            "state": trade.state,
            "provider_ref": trade.provider_ref,
        }

    def rotate_keys(self) -> dict[str, Any]:
        """Alipay's key pair changes; every merchant directory gets the new public key (the
        switch picks it up with ``refresh_certificates``)."""
        rotate_alipay_key(self.ctx.keys_dir)
        self.book.keys = load_provider(self.ctx.keys_dir)
        return {
            "provider": self.provider.value,
            "rotated": "alipay_public_key",
            "keys_dirs": [
                str(merchant_dir(self.ctx.keys_dir, m.merchant_id)) for m in self.merchants
            ],
        }

    def error_body(self, status: int) -> tuple[str, bytes]:
        """The gateway's front end answers errors with an HTML page, not gateway JSON."""
        page = f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"
        return "text/html;charset=utf-8", page.encode()

    @classmethod
    def ensure_keys(cls, keys_root: Path, merchants: list[SimMerchant]) -> None:
        for merchant in merchants:
            generate(keys_root, merchant.merchant_id, merchant.app_id)

    def public_material(self) -> dict[str, Any]:
        return {
            "merchants": [
                {
                    "merchant_id": m.merchant_id,
                    "seller_id": m.merchant_id,
                    "app_id": m.app_id,
                    "keys_dir": str(merchant_dir(self.ctx.keys_dir, m.merchant_id)),
                }
                for m in self.merchants
            ]
        }
