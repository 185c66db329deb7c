"""The pytest plugin every ICRS test suite gets (entry point `icrs`).

Fixtures: `amqp_url` and `postgres_server_url` (session); `postgres_url` (a fresh
database per test); `rabbit_bus` (a started RabbitBus in a namespace of its own,
removed afterwards); `memory_bus` (a started InProcessBus).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from ..bus import InProcessBus, RabbitBus
from . import services
from .databases import create_database, drop_database


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    try:
        with services.amqp_url() as url:
            yield url
    except services.ServiceMissing as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    try:
        with services.database_url() as url:
            yield url
    except services.ServiceMissing as exc:
        pytest.exit(str(exc), returncode=3)


@pytest.fixture
async def postgres_url(postgres_server_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_server_url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def bus_namespace() -> str:
    return f"test-{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def rabbit_bus(amqp_url: str, bus_namespace: str) -> AsyncIterator[RabbitBus]:
    bus = RabbitBus(amqp_url, namespace=bus_namespace, delivery_limit=3, prefetch=50)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.delete_topology()
        await bus.close()


@pytest.fixture
async def memory_bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(delivery_limit=3)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
