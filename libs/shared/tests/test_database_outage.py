"""A request whose database is away gets 503 with Retry-After, never a 500; and a pool
whose connections were all cut recovers on the next request, without a ping before each
use (on the real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from icrs_shared.db import Database
from icrs_shared.errors import install_problem_handlers


def make_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/now")
    async def now() -> dict[str, str]:
        async with db.transaction() as session:
            value = (await session.execute(text("SELECT now()::text"))).scalar_one()
        return {"now": value}

    return app


def client(db: Database) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_app(db), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url, pool_size=3, max_overflow=0)
    yield database
    await database.dispose()


async def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    # Nothing listens on port 1.
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        async with client(db) as http:
            r = await http.get("/now")
    finally:
        await db.dispose()
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["retry-after"] == "1"
    assert r.json()["type"] == "urn:icrs:problem:unavailable"


async def test_connections_cut_by_the_server_cost_one_503_then_the_pool_recovers(
    db: Database, postgres_url: str
) -> None:
    async with client(db) as http:
        for _ in range(3):
            assert (await http.get("/now")).status_code == 200
        async with db.engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        # Cut every connection of the pool, as a database restart would.
        admin = Database(postgres_url)
        try:
            async with admin.engine.connect() as conn:
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
        finally:
            await admin.dispose()
        statuses = [(await http.get("/now")).status_code for _ in range(4)]
        assert statuses[0] == 503
        assert statuses[1:] == [200, 200, 200]
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
