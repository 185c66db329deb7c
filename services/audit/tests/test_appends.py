"""Every event id is appended exactly once: through redelivery, duplicates, replicas
and a restart in the middle of a batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from sqlalchemy import text

from icrs_audit.app import create_app
from icrs_audit.settings import AuditSettings
from icrs_shared.bus import RabbitBus
from icrs_shared.events import Envelope
from icrs_shared.testing import eventually
from icrs_shared.testing.tokens import TestIssuer

if TYPE_CHECKING:
    from conftest import Audit


async def log_rows(app: FastAPI) -> list[tuple[int, str]]:
    async with app.state.runtime.db.sessions() as session:
        rows = await session.execute(text("SELECT idx, event_id FROM log_entries ORDER BY idx"))
        return [(int(i), str(e)) for i, e in rows.all()]


def assert_once_each(rows: list[tuple[int, str]], expected_ids: set[str]) -> None:
    assert [i for i, _ in rows] == list(range(len(rows))), "a gap or a repeat in the indexes"
    ids = [e for _, e in rows]
    assert len(ids) == len(set(ids)), "an event appended twice"
    assert set(ids) == expected_ids


async def test_duplicates_and_redeliveries_are_appended_once(audit: Audit) -> None:
    first = audit.events(100)
    await audit.publish(first)
    await audit.publish([*first[50:], *audit.events(0)])
    more = audit.events(50)
    await audit.publish([*more, *first[:10], *more[:5]])
    await audit.wait_for_size(150)
    await audit.wait_for_checkpoint(150)
    assert_once_each(await log_rows(audit.app), {str(e.id) for e in [*first, *more]})


@asynccontextmanager
async def replica(
    settings: AuditSettings, amqp_url: str, namespace: str, issuer: TestIssuer
) -> AsyncIterator[tuple[FastAPI, RabbitBus]]:
    """One audit process: its own connection to the broker, the shared database."""
    bus = RabbitBus(amqp_url, namespace=namespace, delivery_limit=3, prefetch=50)
    await bus.start()
    app = create_app(settings, bus, jwks=issuer.jwks())
    try:
        async with app.router.lifespan_context(app):
            yield app, bus
    finally:
        await bus.close()


async def size_of(app: FastAPI) -> int:
    async with app.state.runtime.db.sessions() as session:
        return int((await session.execute(text("SELECT size FROM log_head"))).scalar_one())


async def test_two_replicas_append_each_event_once(
    audit: Audit, amqp_url: str, bus_namespace: str
) -> None:
    async with replica(audit.settings, amqp_url, bus_namespace, audit.issuer):
        batch = audit.events(600)
        for start in range(0, 600, 100):
            await audit.publish(batch[start : start + 100])
        await audit.wait_for_size(600)
    await audit.wait_for_checkpoint(600)
    assert_once_each(await log_rows(audit.app), {str(e.id) for e in batch})


async def test_a_restart_mid_batch_leaves_no_gap_and_no_duplicate(
    audit_settings: AuditSettings,
    amqp_url: str,
    bus_namespace: str,
    issuer: TestIssuer,
) -> None:
    # Small, slow batches so that the stop lands in the middle of the stream.
    settings = audit_settings.model_copy(update={"audit_batch_size": 20, "audit_batch_wait": 0.01})
    publisher = RabbitBus(amqp_url, namespace=bus_namespace)
    await publisher.start()
    try:
        sent = [
            Envelope(source="/icrs/intake", type="icrs.case.updated", subject=str(n), data={})
            for n in range(3000)
        ]
        async with replica(settings, amqp_url, bus_namespace, issuer) as (app, _):
            for i in range(0, len(sent), 500):  # in parts, each confirmed within its time
                await publisher.publish(sent[i : i + 500])

            async def started() -> bool:
                return await size_of(app) > 0

            await eventually(started, within=20)
            stopped_at = await size_of(app)
        assert stopped_at < len(sent), "the stream ended before the restart"
        async with replica(settings, amqp_url, bus_namespace, issuer) as (app, bus):

            async def all_in() -> bool:
                return await size_of(app) >= len(sent)

            await eventually(all_in, within=60)
            rows = await log_rows(app)
            await bus.delete_topology()
        assert_once_each(rows, {str(e.id) for e in sent})
    finally:
        await publisher.close()
