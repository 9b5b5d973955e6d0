"""Which provider simulators the process runs.

The provider modules are imported when asked for, not when this package is imported: each pulls
in its provider's signing and crypto, which the framework's own tests and ``fuelswitch --help``
do not need.
"""

from __future__ import annotations

from .base import ProviderSim

__all__ = ["default_providers"]


def default_providers() -> list[type[ProviderSim]]:
    """WeChat Pay, Alipay and UnionPay, in that order (the ready line's order)."""
    from .alipay import AlipaySim
    from .unionpay import UnionPaySim
    from .wechatpay import WeChatPaySim

    return [WeChatPaySim, AlipaySim, UnionPaySim]
