"""The switch's side of the admin socket: its commands over the running switch."""

from .actions import reapply_channel_switches
from .commands import switch_commands
from .context import AdminContext, ProcessControl, operator

__all__ = [
    "AdminContext",
    "ProcessControl",
    "operator",
    "reapply_channel_switches",
    "switch_commands",
]
