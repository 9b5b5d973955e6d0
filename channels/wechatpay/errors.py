"""WeChat Pay's own error classes, each carrying a short stable reason code.

The sans-IO core raises these instead of the foreign exceptions it meets (cryptography's
InvalidSignature / InvalidTag, json and gzip errors), so that the channel and the callback
verifier can turn them into ``ChannelResult`` reasons and ``CallbackRejected`` codes without
knowing which library failed.
"""

from __future__ import annotations

__all__ = [
    "BillError",
    "CredentialsError",
    "DecryptError",
    "ProtocolError",
    "SignatureError",
    "WeChatPayError",
]


class WeChatPayError(Exception):
    """Base class: ``reason`` is a snake_case code fit for a metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class SignatureError(WeChatPayError):
    """A signature, its headers or the key it names did not check out."""


class DecryptError(WeChatPayError):
    """AES-256-GCM refused the ciphertext: wrong key, nonce, associated data or a tampered tag."""


class ProtocolError(WeChatPayError):
    """A message that is not what the API defines (bad JSON, missing or mistyped fields)."""


class BillError(WeChatPayError):
    """A bill file that is truncated, corrupted, mis-hashed or not in a known layout."""


class CredentialsError(WeChatPayError):
    """Key material on disk that is missing or unreadable."""
