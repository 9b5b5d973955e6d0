"""Operations: admin socket, ``fuelswitch ops`` commands, metrics and logging setup."""

from ops.metrics import CONTENT_TYPE, METRICS, Metrics, label

__all__ = ["CONTENT_TYPE", "METRICS", "Metrics", "label"]
