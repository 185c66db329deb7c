from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from icrs_shared.bus import InProcessBus, RabbitBus
from icrs_shared.db import Database
from icrs_shared.tables import messaging_tables
from icrs_shared.testing import TcpProxy, eventually


class Harness:
    """A bus that a test can take away and bring back."""

    def __init__(self, kind: str, bus: InProcessBus | RabbitBus, proxy: TcpProxy | None) -> None:
        self.kind = kind
        self.bus = bus
        self.proxy = proxy

    async def cut(self) -> None:
        if self.proxy is not None:
            await self.proxy.cut()
        else:
            await self.bus.close()

    async def restore(self) -> None:
        if self.proxy is not None:
            await self.proxy.restore()
        else:
            await self.bus.start()


@pytest.fixture(params=["memory", "rabbit"])
async def harness(request: pytest.FixtureRequest, bus_namespace: str) -> AsyncIterator[Harness]:
    if request.param == "memory":
        bus = InProcessBus(delivery_limit=3)
        await bus.start()
        try:
            yield Harness("memory", bus, None)
        finally:
            await bus.close()
        return
    amqp_url: str = request.getfixturevalue("amqp_url")
    proxy = TcpProxy.to(amqp_url, 5672)
    await proxy.start()
    rbus = RabbitBus(proxy.url(amqp_url), namespace=bus_namespace, delivery_limit=3, prefetch=50)
    await rbus.start()
    try:
        yield Harness("rabbit", rbus, proxy)
    finally:
        if proxy.is_cut:
            await proxy.restore()
            await eventually(rbus.ready)
        await rbus.delete_topology()
        await rbus.close()
        await proxy.close()


effects_metadata = MetaData()
effects = Table(
    "effects",
    effects_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("note", String(50), nullable=False),
)
outbox_table, inbox_table = messaging_tables(effects_metadata)


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
    try:
        yield database
    finally:
        await database.dispose()
