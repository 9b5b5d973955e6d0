"""Build the Channel a ChannelConfig describes.

Each adapter is imported when a channel of its provider is built: a switch configured with one
provider does not load the other providers' code. The imports are written out (not looked up by
name) so that the type checker holds every adapter to the Channel protocol.
"""

from __future__ import annotations

from channels.config import ChannelConfig
from channels.interface import Channel
from channels.model import Provider
from channels.transport import Transport

__all__ = ["build_channel"]


def build_channel(cfg: ChannelConfig, *, transport: Transport | None = None) -> Channel:
    """The provider's adapter for ``cfg``; it loads its credentials from ``cfg.keys_dir`` (and
    raises its provider's credentials error when they are missing or do not fit)."""
    if cfg.provider is Provider.WECHATPAY:
        from channels.wechatpay import WeChatPayChannel

        return WeChatPayChannel.from_config(cfg, transport=transport)
    if cfg.provider is Provider.ALIPAY:
        from channels.alipay import AlipayChannel

        return AlipayChannel.from_config(cfg, transport=transport)
    if cfg.provider is Provider.UNIONPAY:
        from channels.unionpay import UnionPayChannel

        return UnionPayChannel.from_config(cfg, transport=transport)
    raise ValueError(f"channel {cfg.name!r}: no adapter for {cfg.provider!r}")
