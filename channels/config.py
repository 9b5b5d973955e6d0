"""How a channel is configured: one merchant account at one provider.

Secrets never live in the configuration itself: ``keys_dir`` points at the directory that holds
the merchant's private key and the provider's public material, in the layout the provider's
``credentials`` module reads (the provider simulators write that layout on first start).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from channels.model import Provider
from channels.transport import HttpLimits

__all__ = ["ChannelConfig"]


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    name: str  # unique, e.g. "wechatpay-main"; the router and the journal use it
    provider: Provider
    base_url: str  # the provider's API root (or its simulator's)
    merchant_id: str  # WeChat mchid, Alipay seller/partner id, UnionPay merId
    app_id: str  # WeChat appid, Alipay app_id; UnionPay: unused ("")
    keys_dir: Path
    notify_url: str  # where the provider calls back (the switch's /callbacks/<provider>)
    limits: HttpLimits = field(default_factory=HttpLimits)
    max_in_flight: int = 64  # the ChannelActor's concurrency limit
    certificate_refresh_s: float = 6 * 3600.0
    options: Mapping[str, str] = field(default_factory=dict)  # provider-specific switches
