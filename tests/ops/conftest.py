"""Fixtures for the admin socket tests; the helpers themselves are in ``support.py``."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

pytest.register_assert_rewrite("tests.ops.support")


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory others may enter: pytest's own tmp dirs are 0700 (another uid could
    not reach a socket inside) and can be too long for a Unix socket path."""
    path = Path(tempfile.mkdtemp(prefix="fsops-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event, at every level (the suite's config drops all but CRITICAL)."""
    saved = structlog.get_config()
    capture = LogCapture()
    structlog.configure(
        processors=[capture],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
    )
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)
