"""Alipay's own failures, each with a short stable reason code.

The sans-IO core raises these instead of leaking ``cryptography``, ``orjson`` or ``zipfile``
exceptions, so the adapter and the simulator map one small family of errors to results,
``CallbackRejected`` reasons or gateway error answers.
"""

from __future__ import annotations

__all__ = [
    "AlipayError",
    "BillFormatError",
    "CredentialsError",
    "FormError",
    "RequestError",
    "ResponseError",
]


class AlipayError(Exception):
    """Base class. ``reason`` is a snake_case code safe to use as a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class CredentialsError(AlipayError):
    """A keys directory that is missing, incomplete or holds unreadable keys."""


class ResponseError(AlipayError):
    """A gateway answer that cannot be trusted or read: unsigned, badly signed, malformed."""


class BillFormatError(AlipayError):
    """A bill archive or file that does not have Alipay's layout."""


class RequestError(AlipayError):
    """A request the switch must not send: a bad key or amount caught before signing."""


class FormError(AlipayError):
    """A form body (notify or gateway request) that is not a well-formed, unambiguous form."""
