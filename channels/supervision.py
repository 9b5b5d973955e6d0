"""The channels subtree: one ChannelActor per configured channel under one supervisor.

``one_for_one``: channels are independent (several merchants at one provider are several
channels), so one that crashes restarts alone, with backoff, since a crash usually means its
provider answers something the adapter did not expect. Each child spec keeps the channel's
:class:`~channels.actor.ChannelControl`, so a restart keeps the operator's enable switch and
the health measured so far.

A channel that cannot be built at start (missing keys) fails the whole subtree's start: that is
a configuration error, and a switch that silently runs without one of its channels would route
everything elsewhere until someone noticed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from actors import ROOT, ActorSystem, Address, AddressLike, Backoff, ChildSpec, Supervisor
from channels.actor import ChannelActor, ChannelControl
from channels.config import ChannelConfig
from channels.factory import build_channel
from channels.interface import Channel

__all__ = ["channel_spec", "channels_spec", "start_channels"]

MakeChannel = Callable[[ChannelConfig], Channel]


def channel_spec(
    config: ChannelConfig,
    *,
    make_channel: MakeChannel = build_channel,
    control: ChannelControl | None = None,
    backoff: Backoff | None = None,
    **options: Any,
) -> ChildSpec:
    """The child spec of one channel; ``options`` go to :class:`ChannelActor`."""
    kept = control if control is not None else ChannelControl()

    def make() -> ChannelActor:
        return ChannelActor(config, make_channel, control=kept, **options)

    return ChildSpec(
        config.name,
        make,
        # Room for terminate to let in-flight provider calls finish before it is cancelled.
        shutdown=ChannelActor.terminate_timeout + 5.0,
        backoff=backoff or Backoff(min_delay=1.0, max_delay=60.0),
    )


def channels_spec(
    configs: Iterable[ChannelConfig],
    *,
    name: str = "channels",
    make_channel: MakeChannel = build_channel,
    controls: Mapping[str, ChannelControl] | None = None,
    intensity: int = 10,
    period: float = 60.0,
    **options: Any,
) -> ChildSpec:
    """A supervisor with one ChannelActor per config, each at ``<name>/<channel name>``.

    ``controls`` may hand in a channel's ChannelControl (tests, or a switch that persists the
    operator's switches); the others get a fresh one.
    """
    configs = list(configs)
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"channel names must be unique: {', '.join(duplicates)}")
    given = controls or {}
    children = [
        channel_spec(c, make_channel=make_channel, control=given.get(c.name), **options)
        for c in configs
    ]
    return ChildSpec(
        name,
        lambda: Supervisor(children, intensity=intensity, period=period),
        shutdown=math.inf,
    )


async def start_channels(
    system: ActorSystem,
    configs: Iterable[ChannelConfig],
    *,
    supervisor: AddressLike = ROOT,
    name: str = "channels",
    **options: Any,
) -> Address:
    """Start the channels supervisor under ``supervisor``; returns its address once every
    channel actor has started (raises ``StartFailed`` if one could not)."""
    return await system.start_child(
        channels_spec(configs, name=name, **options), supervisor=supervisor
    )
