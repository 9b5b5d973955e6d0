"""Operations: admin socket, ``fuelswitch ops`` commands, metrics and logging setup."""

from ops.metrics import CONTENT_TYPE, METRICS, Metrics, label
from ops.process import (
    Service,
    configure_stderr_logs,
    leaves,
    run_until_signal,
    serve_until_signal,
)

__all__ = [
    "CONTENT_TYPE",
    "METRICS",
    "Metrics",
    "Service",
    "configure_stderr_logs",
    "label",
    "leaves",
    "run_until_signal",
    "serve_until_signal",
]
