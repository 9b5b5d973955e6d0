"""Callback verification with the channel objects the ChannelActors are running.

A callback must be verified with the keys and platform certificates the channel holds now
(WeChat's are refreshed by its actor), so the callback processor must not build channels of
its own. :class:`LiveChannels` is the ``make_channel`` the channel supervisor uses: it builds
each channel as usual and remembers the current object per name, and :class:`LiveVerifier`
delegates to whichever incarnation is current. Verification is synchronous and pure, so
sharing the object with its actor needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from channels.config import ChannelConfig
from channels.factory import build_channel
from channels.interface import Channel, ConfirmsCallbacks
from channels.model import CallbackEvent, CallbackRejected, HttpReply, Provider

__all__ = ["LiveChannels", "LiveConfirmingVerifier", "LiveVerifier"]


class LiveChannels:
    def __init__(self, make: Callable[[ChannelConfig], Channel] = build_channel) -> None:
        self._make = make
        self.current: dict[str, Channel] = {}

    def __call__(self, config: ChannelConfig) -> Channel:
        channel = self._make(config)
        self.current[config.name] = channel
        return channel

    def verifiers(self, configs: Mapping[str, ChannelConfig]) -> list[LiveVerifier]:
        out: list[LiveVerifier] = []
        for name, config in configs.items():
            kind = LiveConfirmingVerifier if config.provider is Provider.UNIONPAY else LiveVerifier
            out.append(kind(self, name, config.provider))
        return out


class LiveVerifier:
    def __init__(self, live: LiveChannels, name: str, provider: Provider) -> None:
        self._live = live
        self._name = name
        self._provider = provider

    @property
    def provider(self) -> Provider:
        return self._provider

    @property
    def channel_name(self) -> str:
        return self._name

    def _channel(self) -> Channel:
        channel = self._live.current.get(self._name)
        if channel is None:
            raise CallbackRejected("channel_starting", f"channel {self._name} is not running yet")
        return channel

    def verify_callback(self, headers: Mapping[str, str], body: bytes, now: float) -> CallbackEvent:
        return self._channel().verify_callback(headers, body, now)

    def ack(self, accepted: bool, message: str = "") -> HttpReply:
        return self._channel().ack(accepted, message)


class LiveConfirmingVerifier(LiveVerifier):
    async def confirm_callback(self, event: CallbackEvent) -> CallbackEvent:
        channel = self._channel()
        if not isinstance(channel, ConfirmsCallbacks):
            return event
        return await channel.confirm_callback(event)
