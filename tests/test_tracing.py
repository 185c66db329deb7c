"""One trace from an HTTP request, through the outbox and RabbitMQ, into the consumer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from fastapi import APIRouter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.bus import RabbitBus
from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.events.catalog import CaseEvent
from icrs_shared.messaging import Consumers
from icrs_shared.runtime import RuntimeDep, ServiceSpec, SessionDep, build_app
from icrs_shared.settings import ServiceSettings, database_url_field
from icrs_shared.tables import messaging_tables
from icrs_shared.telemetry import setup_tracing
from icrs_shared.testing import eventually
from icrs_shared.testing.databases import create_database, drop_database

EXPORTER = InMemorySpanExporter()


class TraceSettings(ServiceSettings):
    service: ClassVar[str] = "tracing"
    database_url: str | None = database_url_field("tracing")


def producer_spec(metadata: MetaData) -> ServiceSpec:
    router = APIRouter()

    @router.post("/v1/cases/{case_id}/touch", status_code=202)
    async def touch(case_id: uuid.UUID, runtime: RuntimeDep, session: SessionDep) -> None:
        data = CaseEvent(case_id=case_id, organization_id=uuid.uuid4())
        await runtime.messaging.outbox.emit(session, "icrs.case.updated", data, subject=case_id)
        await session.commit()

    return ServiceSpec(
        name="producer",
        package="icrs_shared",
        title="producer",
        description="",
        metadata=metadata,
        routers=(router,),
    )


def consumer_spec(metadata: MetaData, seen: list[Envelope]) -> ServiceSpec:
    consumers = Consumers()

    @consumers.on("watcher", "case.*")
    async def watch(session: AsyncSession, env: Envelope) -> None:
        seen.append(env)

    return ServiceSpec(
        name="consumer",
        package="icrs_shared",
        title="consumer",
        description="",
        metadata=metadata,
        consumers=consumers,
    )


@pytest.fixture
async def two_databases(postgres_server_url: str) -> AsyncIterator[tuple[str, str]]:
    urls = (await create_database(postgres_server_url), await create_database(postgres_server_url))
    try:
        yield urls
    finally:
        for url in urls:
            await drop_database(url)


async def _create_tables(url: str, metadata: MetaData) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    await db.dispose()


async def test_one_trace_spans_request_publish_and_consumer(
    two_databases: tuple[str, str], rabbit_bus: RabbitBus, tmp_path: Path
) -> None:
    setup_tracing("icrs-test", exporter=EXPORTER)
    EXPORTER.clear()
    producer_meta, consumer_meta = MetaData(), MetaData()
    messaging_tables(producer_meta)
    messaging_tables(consumer_meta)
    for url, meta in zip(two_databases, (producer_meta, consumer_meta), strict=True):
        await _create_tables(url, meta)
    seen: list[Envelope] = []

    def settings(url: str) -> TraceSettings:
        return TraceSettings(database_url=url, data_dir=tmp_path, migrate_on_start=False)

    producer = build_app(producer_spec(producer_meta), settings(two_databases[0]), rabbit_bus)
    consumer = build_app(consumer_spec(consumer_meta, seen), settings(two_databases[1]), rabbit_bus)
    case_id = uuid.uuid4()
    async with (
        consumer.router.lifespan_context(consumer),
        producer.router.lifespan_context(producer),
    ):
        transport = httpx.ASGITransport(app=producer)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            r = await client.post(f"/v1/cases/{case_id}/touch")
            assert r.status_code == 202
        await eventually(lambda: len(seen) == 1, within=15)
        await eventually(
            lambda: any(s.kind == SpanKind.CONSUMER for s in EXPORTER.get_finished_spans())
        )

    spans = EXPORTER.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    [publish] = [s for s in spans if s.kind == SpanKind.PRODUCER]
    [consume] = [s for s in spans if s.kind == SpanKind.CONSUMER]
    assert server.name == "POST /v1/cases/{case_id}/touch"
    assert publish.name == "publish icrs.case.updated"
    assert consume.name == "process icrs.case.updated"
    trace_ids = {s.context.trace_id for s in (server, publish, consume)}
    assert trace_ids == {server.context.trace_id}
    assert publish.parent is not None
    assert publish.parent.span_id == server.context.span_id
    assert consume.parent is not None
    assert consume.parent.span_id == server.context.span_id
    assert seen[0].traceparent is not None
    assert f"{server.context.trace_id:032x}" in seen[0].traceparent
    assert str(case_id) not in str(server.attributes)  # the raw path is not recorded
