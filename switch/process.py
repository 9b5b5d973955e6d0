"""Process-wide settings for long-running fuelswitch processes."""

from __future__ import annotations

import gc
from typing import Final

GC_THRESHOLDS: Final = (50_000, 20, 10)


def tune_gc() -> None:
    """Make the cyclic collector fit a heap of long-lived actors.

    A switch holds tens of thousands of long-lived objects per thousand actors (cells,
    mailboxes, tasks, coroutine frames). With CPython's default young-generation
    threshold of 700 allocations, the collector keeps re-walking that growing heap
    while actors start, which makes starting 10,000 actors about 1.5x slower
    (``fuelswitch bench actors`` reports both figures). A larger young generation and
    freezing what was allocated at import keep collections rare and short; cycles
    are still collected.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
