"""Database administration the switch and its tools need: create and drop databases."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .bridge import connect_once

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def database_url_for(server_url: str, name: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a safe database name: {name!r}")
    return name


async def create_database(server_url: str, name: str) -> str:
    await connect_once(server_url, f'CREATE DATABASE "{_checked(name)}"')
    return database_url_for(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    await connect_once(server_url, f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')
