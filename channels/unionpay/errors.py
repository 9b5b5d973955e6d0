"""The one exception the UnionPay cores raise.

Every sans-IO module (certificates, signatures, form codec, replies, bills) reports bad input as
an :class:`AcpError` carrying a short, stable ``reason``. The callback verifier turns it into
``CallbackRejected`` with the same reason (a metric label), the channel into a ChannelResult or
``ChannelError``: callers never see a ``cryptography`` or ``binascii`` exception.
"""

from __future__ import annotations

__all__ = ["AcpError"]


class AcpError(ValueError):
    """Bad UnionPay material: ``reason`` is snake_case and stable (``bad_signature``,
    ``bad_cert_chain``, ``duplicate_field``...), ``message`` is for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
