"""Fixtures of the Alipay tests: one generated key tree for the session, and the simulator
running inside the test (fresh per test: its ledger and clock are the test's own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.channels.alipay.sim_support import SimWorld, alipay_world, generate_keys
from tests.channels.callback_receiver import Received, Receiver


@pytest.fixture(scope="session")
def alipay_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("alipay-keys")
    generate_keys(root)
    return root


def answer_success(request: Received) -> tuple[int, bytes]:
    return 200, b"success"


@pytest.fixture
async def world(alipay_keys: Path) -> AsyncIterator[SimWorld]:
    async with alipay_world(alipay_keys, Receiver(answer_success)) as running:
        yield running
