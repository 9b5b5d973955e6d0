"""Settings from the environment.

``FUELSWITCH_HOME`` (default ``./var``) holds everything the switch writes locally:
the embedded servers' data, keys, sockets. ``FUELSWITCH_DATABASE_URL`` and
``FUELSWITCH_REDIS_URL`` point at external servers; without them the embedded ones
are started under the home directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    database_url: str | None
    redis_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            home=Path(env.get("FUELSWITCH_HOME") or "var").resolve(),
            database_url=env.get("FUELSWITCH_DATABASE_URL") or None,
            redis_url=env.get("FUELSWITCH_REDIS_URL") or None,
        )
