"""Helpers for the tests that run ``WeChatPayChannel`` against the simulator process."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import trio

from channels.config import ChannelConfig
from channels.model import CallbackEvent, CallbackRejected, ChannelResult, HoldRequest, Provider
from channels.transport import HttpLimits, Request, Response, Transport
from channels.wechatpay import WeChatPayChannel
from tests.channels.callback_receiver import Received
from tests.channels.provider_sim import SAFE, ProviderSimProcess


class RecordingTransport(Transport):
    """The real transport, remembering which key signed each answer."""

    def __init__(self, base_url: str, limits: HttpLimits | None = None) -> None:
        super().__init__(base_url, limits)
        self.serials: list[str] = []

    async def send(self, request: Request) -> Response:
        response = await super().send(request)
        if "wechatpay-serial" in response.headers:
            self.serials.append(response.headers["wechatpay-serial"])
        return response


def unique_key(prefix: str = "FS") -> str:
    """A key no other test of the process uses (WeChat's 6-32 characters)."""
    return f"{prefix}{secrets.token_hex(8).upper()}"


def merchant(sim: ProviderSimProcess, index: int) -> dict[str, str]:
    found: dict[str, str] = sim.ready["merchants"]["wechatpay"][index]
    return found


def config(
    sim: ProviderSimProcess,
    index: int = 0,
    *,
    notify_url: str = "http://127.0.0.1:9/notify",
    read_timeout_s: float = 10.0,
) -> ChannelConfig:
    m = merchant(sim, index)
    return ChannelConfig(
        name=f"wechatpay-{m['merchant_id']}",
        provider=Provider.WECHATPAY,
        base_url=sim.url("wechatpay"),
        merchant_id=m["merchant_id"],
        app_id=m["app_id"],
        keys_dir=Path(sim.ready["keys"]) / "wechatpay" / m["merchant_id"],
        notify_url=notify_url,
        limits=replace(HttpLimits(), read_timeout_s=read_timeout_s),
    )


def channel(cfg: ChannelConfig) -> tuple[WeChatPayChannel, RecordingTransport]:
    transport = RecordingTransport(cfg.base_url, cfg.limits)
    return WeChatPayChannel.from_config(cfg, transport=transport), transport


def hold_request(key: str, amount_fen: int, notify_url: str) -> HoldRequest:
    return HoldRequest(
        key=key,
        amount_fen=amount_fen,
        description="92# 汽油 3号枪",
        payer_id="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        notify_url=notify_url,
        created_at=datetime.now(UTC),
    )


def verified(channel: WeChatPayChannel, received: Received) -> CallbackEvent | None:
    """The event a received callback carries, if the channel accepts it now."""
    try:
        return channel.verify_callback(received.headers, received.body, time.time())
    except CallbackRejected:
        return None


async def until(
    check: Callable[[], Awaitable[ChannelResult]], done: Callable[[ChannelResult], bool]
) -> ChannelResult:
    """Poll ``check`` until ``done`` (bounded by SAFE)."""
    with trio.fail_after(SAFE):
        while True:
            result = await check()
            if done(result):
                return result
            await trio.sleep(0.05)
