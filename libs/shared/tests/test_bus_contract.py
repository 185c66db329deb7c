"""The bus contract, run against InProcessBus and against RabbitBus on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.db import Database
from icrs_shared.events import Envelope, platform_events
from icrs_shared.inbox import Inbox, once_per_event
from icrs_shared.outbox import Outbox, OutboxRelay
from icrs_shared.testing import eventually

from .conftest import Harness, effects, inbox_table, outbox_table


def event(kind: str, **data: object) -> Envelope:
    return Envelope(
        source="/icrs/test", type=f"icrs.{kind}", subject=str(uuid.uuid4()), data=dict(data)
    )


async def test_topic_routing_with_wildcards(harness: Harness) -> None:
    got: dict[str, list[str]] = defaultdict(list)

    def recorder(name: str):
        async def handle(env: Envelope) -> None:
            got[name].append(env.routing_key)

        return handle

    bus = harness.bus
    await bus.subscribe("t", "cases", ["case.*"], recorder("cases"))
    await bus.subscribe("t", "everything", ["#"], recorder("everything"))
    await bus.subscribe("t", "registered", ["*.registered"], recorder("registered"))
    await bus.subscribe("t", "referral_tree", ["referral.#"], recorder("referral_tree"))
    await bus.subscribe("t", "exact", ["service.published", "client.issued"], recorder("exact"))

    keys = [
        "case.registered",
        "case.erased",
        "referral.created",
        "organization.registered",
        "service.published",
        "service.updated",
    ]
    await bus.publish([event(k) for k in keys])

    await eventually(lambda: len(got["everything"]) == len(keys))
    await asyncio.sleep(0.2)  # let any wrong delivery arrive before judging
    assert sorted(got["cases"]) == ["case.erased", "case.registered"]
    assert sorted(got["registered"]) == ["case.registered", "organization.registered"]
    assert got["referral_tree"] == ["referral.created"]
    assert got["exact"] == ["service.published"]
    assert sorted(got["everything"]) == sorted(keys)


async def test_failing_handler_is_retried_then_parked_while_the_rest_flow(harness: Harness) -> None:
    attempts: Counter[str] = Counter()
    handled: list[str] = []
    poison = event("case.registered")

    async def handle(env: Envelope) -> None:
        attempts[str(env.id)] += 1
        if env.id == poison.id:
            raise RuntimeError("cannot handle this one")
        handled.append(str(env.id))

    bus = harness.bus
    await bus.subscribe("t", "picky", ["case.*"], handle, delivery_limit=3)
    others = [event("case.updated") for _ in range(5)]
    # The poison goes first; the others must not wait behind it for ever.
    publishing = asyncio.create_task(bus.publish([poison]))
    await bus.publish(others)
    await eventually(lambda: len(handled) == 5)
    await publishing

    async def parked_once() -> bool:
        return len(await bus.parked("t")) == 1

    await eventually(parked_once, within=20)
    [parked] = await bus.parked("t")
    assert parked.event_id == str(poison.id)
    assert parked.reason == "delivery_limit"
    assert parked.deliveries == 4
    assert parked.consumer == "picky"
    assert Envelope.from_json(parked.body) == poison
    # The limit counts failed deliveries allowed, as RabbitMQ's x-delivery-limit does.
    assert attempts[str(poison.id)] == 4
    assert all(attempts[str(e.id)] == 1 for e in others)
    # Looking at the parking queue leaves what it holds in place.
    assert len(await bus.parked("t")) == 1


async def test_redelivered_event_has_one_effect(harness: Harness, db: Database) -> None:
    inbox = Inbox(inbox_table)
    failed_once: set[uuid.UUID] = set()

    async def effect(session: AsyncSession, env: Envelope) -> None:
        await session.execute(effects.insert().values(event_id=str(env.id), note="done"))
        if env.id not in failed_once:
            # Fail after writing: the effect must roll back with the inbox record.
            failed_once.add(env.id)
            raise RuntimeError("crash before commit")

    await harness.bus.subscribe(
        "t", "effects", ["case.*"], once_per_event(db, inbox, "effects", effect)
    )
    first, second = event("case.registered"), event("case.updated")
    await harness.bus.publish([first, second])
    await harness.bus.publish([first])  # a duplicate publish, as after a relay crash

    async def count() -> int:
        async with db.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(effects))).scalar_one())

    await eventually(lambda: _eq(count(), 2), within=15)
    await asyncio.sleep(0.5)
    assert await count() == 2
    async with db.sessions() as s:
        rows = (await s.execute(select(effects.c.event_id))).scalars().all()
    assert sorted(rows) == sorted([str(first.id), str(second.id)])


async def _eq(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_event_published_while_broker_unreachable_arrives_after(
    harness: Harness, db: Database
) -> None:
    received: list[uuid.UUID] = []

    async def handle(env: Envelope) -> None:
        received.append(env.id)

    await harness.bus.subscribe("t", "late", ["case.*"], handle)
    outbox = Outbox(outbox_table, service="intake", registry=platform_events())
    relay = OutboxRelay(db, outbox_table, harness.bus, poll_interval=0.1)
    await relay.start()
    try:
        await harness.cut()
        env = event("case.closed")
        async with db.transaction() as session:
            await outbox.add(session, env)
        await asyncio.sleep(1.0)
        assert received == []
        assert await relay.pending() == 1  # waiting, not lost
        await harness.restore()
        await eventually(lambda: env.id in received, within=30)
        await eventually(lambda: _eq(relay.pending(), 0))
    finally:
        await relay.stop()


async def test_events_of_a_rolled_back_transaction_are_never_published(
    harness: Harness, db: Database
) -> None:
    received: list[uuid.UUID] = []

    async def handle(env: Envelope) -> None:
        received.append(env.id)

    await harness.bus.subscribe("t", "watch", ["case.*"], handle)
    outbox = Outbox(outbox_table, service="intake", registry=platform_events())
    relay = OutboxRelay(db, outbox_table, harness.bus, poll_interval=0.1)
    await relay.start()
    try:
        doomed, kept = event("case.registered"), event("case.updated")

        async def failing_change() -> None:
            async with db.transaction() as session:
                await session.execute(effects.insert().values(event_id=str(doomed.id), note="x"))
                await outbox.add(session, doomed)
                raise RuntimeError("the state change failed")

        with pytest.raises(RuntimeError):
            await failing_change()
        async with db.transaction() as session:
            await outbox.add(session, kept)
        await eventually(lambda: kept.id in received)
        await asyncio.sleep(0.3)
        assert doomed.id not in received
        assert await relay.pending() == 0
    finally:
        await relay.stop()


async def test_unsubscribe_lets_the_running_handler_finish_and_delivers_no_more(
    harness: Harness,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    handled: list[str] = []

    async def slow(env: Envelope) -> None:
        started.set()
        await release.wait()
        handled.append(str(env.id))

    bus = harness.bus
    await bus.subscribe("t", "slow", ["case.*"], slow)
    first = event("case.registered")
    publishing = asyncio.create_task(bus.publish([first]))
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(bus.unsubscribe("t"))
    await asyncio.sleep(0.2)
    assert not stopping.done(), "unsubscribe returned while a handler was running"
    release.set()
    await asyncio.wait_for(stopping, 10)
    await publishing
    assert handled == [str(first.id)]

    later = event("case.updated")
    await bus.publish([later])
    await asyncio.sleep(0.3)
    assert handled == [str(first.id)], "a delivery reached an unsubscribed handler"
    if harness.kind == "rabbit":
        # The queue kept it: the next start of the service gets it.
        again: list[str] = []

        async def record(env: Envelope) -> None:
            again.append(str(env.id))

        await bus.subscribe("t", "slow", ["case.*"], record)
        await eventually(lambda: again == [str(later.id)])


async def test_an_outage_of_the_handlers_database_spends_no_deliveries(harness: Harness) -> None:
    from sqlalchemy.exc import OperationalError

    outage = {"left": 6}  # more failures than the delivery limit of 3
    handled: list[str] = []

    async def handle(env: Envelope) -> None:
        if outage["left"] > 0:
            outage["left"] -= 1
            raise OperationalError("SELECT 1", None, ConnectionRefusedError("database away"))
        handled.append(str(env.id))

    bus = harness.bus
    await bus.subscribe("t", "patient", ["case.*"], handle)
    sent = event("case.registered")
    await bus.publish([sent])
    await eventually(lambda: handled == [str(sent.id)], within=20)
    assert await bus.parked("t") == []
