"""Fixtures shared by the channel tests: the provider simulators as a real process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.channels.provider_sim import ProviderSimProcess


@pytest.fixture(scope="module")
def provider_sim_args() -> tuple[str, ...]:
    """Arguments of the module's simulator process; a test module overrides this fixture
    (e.g. ``("--clock-scale", "3600")``) to run it differently."""
    return ()


@pytest.fixture(scope="module")
def provider_sim(provider_sim_args: tuple[str, ...]) -> Iterator[ProviderSimProcess]:
    """``fuelswitch sim providers`` for the test module, with a temporary FUELSWITCH_HOME.

    ``.ready`` is its ready line (URLs, keys root, merchants), ``.control`` a ControlClient.
    State (ledger, faults, clock) is shared by the module's tests: tests use keys of their own
    and reset the faults they set (``provider_sim.control.clear_faults()``)."""
    process = ProviderSimProcess(*provider_sim_args)
    try:
        process.start()
        yield process
    finally:
        if process.proc is not None:
            process.terminate()
        process.cleanup()
