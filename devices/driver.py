"""What a PumpActor needs from a dispenser, whatever protocol it speaks.

The vocabulary is GFD-1's (IFSF fuelling-point states, the sale block, per-nozzle
totals): the GFD-1 driver passes it through, and a DART driver maps its pump's
transactions onto it, so the actor, its journal rules and the restart table work
unchanged on either. Every method raises only :class:`DriverError` subclasses.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .gfd1.codec import NozzleTotals, PointConfig, StatusBlock
from .gfd1.states import CommandResult, PresetType


class DriverError(Exception):
    """The pump could not be read or commanded."""


class PumpUnreachable(DriverError):
    """No answer, or the link is down. For a command, the outcome is unknown: read the
    pump before deciding anything (CMD_SEQ makes resending the same command harmless)."""


class CommandInterrupted(PumpUnreachable):
    """The pump restarted while a command was outstanding. The command is not sent again:
    a restarted pump has forgotten the CMD_SEQ it acknowledged and would run a resend as
    new. Whether it ran before the restart is unknown: the BOOT_COUNT rule reconciles."""


class PumpFault(DriverError):
    """The pump answered with something no correct pump would send (a bad frame, an
    impossible register value): a device fault to raise as an alert, not a crash."""


class CommandRefused(DriverError):
    """The pump executed the command and refused it (BUSY, ILLEGAL_STATE, BAD_ARG, ...)."""

    def __init__(self, command: str, result: CommandResult) -> None:
        super().__init__(f"{command} refused: {result.name}")
        self.command = command
        self.result = result


@dataclass(frozen=True, slots=True)
class DriverMemory:
    """What the journal knows about the pump, handed to the driver before its first read.

    A GFD-1 pump keeps the switch's token in its sale block and counts its own restarts,
    so its driver needs none of this. A DART pump keeps neither: its driver recognises
    the switch's sale by the journaled start totals, and carries the journaled boot
    count and price-set id forward, so that a restarted switch sees the same pump.
    """

    token: int | None = None  # of the open sale
    nozzles: frozenset[int] = frozenset()  # the open sale's allowed nozzles
    start_volume_totals: Mapping[int, int] = field(default_factory=dict)
    boot_count: int | None = None
    price_set_id: int | None = None


class PumpDriver(abc.ABC):
    """One fuelling point."""

    def restore(self, memory: DriverMemory) -> None:  # noqa: B027 (optional, not abstract)
        """Take what the journal knows (see :class:`DriverMemory`); a no-op by default."""

    @abc.abstractmethod
    async def status(self) -> StatusBlock: ...

    @abc.abstractmethod
    async def totals(self) -> tuple[NozzleTotals, ...]: ...

    @abc.abstractmethod
    async def config(self) -> PointConfig: ...

    @abc.abstractmethod
    async def authorize(
        self, *, token: int, nozzle_mask: int, preset_type: PresetType, preset_value: int
    ) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def suspend(self) -> None: ...

    @abc.abstractmethod
    async def resume(self) -> None: ...

    @abc.abstractmethod
    async def cancel_authorization(self) -> None: ...

    @abc.abstractmethod
    async def emergency_stop(self) -> None: ...

    @abc.abstractmethod
    async def lock_sale(self, sale_seq: int) -> None: ...

    @abc.abstractmethod
    async def clear_sale(self, sale_seq: int) -> None: ...

    @abc.abstractmethod
    async def set_prices(self, prices: Sequence[int], price_set_id: int) -> None:
        """Stage unit prices (milli-fen per litre, nozzle 1 first) and apply them."""

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def reset_error(self) -> None: ...

    @abc.abstractmethod
    def statistics(self) -> dict[str, Any]: ...
