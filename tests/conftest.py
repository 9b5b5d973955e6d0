"""Test-wide setup: keep the runtime's logs out of the way unless a test asks for them."""

from __future__ import annotations

import logging

import structlog

structlog.configure(
    wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
    cache_logger_on_first_use=False,
)
