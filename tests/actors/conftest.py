"""Fixtures for the actor tests; the helpers themselves are in ``support.py``."""

from __future__ import annotations

import pytest

# Rewrite the asserts inside the shared helpers (crash(), actor_of(), ...) as pytest does
# for test modules, so a failing helper reports the values it compared.
pytest.register_assert_rewrite("tests.actors.support")

from tests.actors.support import Log  # noqa: E402


@pytest.fixture
def log() -> Log:
    return Log()
