"""Fresh PostgreSQL databases for tests, made and dropped on a server."""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy.engine import URL, make_url


def _server_dsn(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(server_url: str, prefix: str = "icrs_test") -> str:
    """Create an empty database on the server; return its SQLAlchemy URL."""
    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_server_dsn(url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    name = url.database
    conn = await asyncpg.connect(_server_dsn(url.set(database="postgres")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
