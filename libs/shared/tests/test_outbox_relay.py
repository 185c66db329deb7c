"""The outbox relay on the real PostgreSQL: batches, replicas, waiting while the bus is away."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select

from icrs_shared.bus import BusUnavailable, PublishError, RabbitBus
from icrs_shared.db import Database
from icrs_shared.events import Envelope, platform_events
from icrs_shared.events.catalog import CaseErased
from icrs_shared.outbox import Outbox, OutboxRelay
from icrs_shared.testing import eventually, statements

from .conftest import outbox_table


class CountingBus:
    """Records what was published, and in what order; can refuse, confirm only part of a
    batch, or hold every publish until `gate` is set."""

    def __init__(self) -> None:
        self.published: Counter[uuid.UUID] = Counter()
        self.order: list[uuid.UUID] = []
        self.down = False
        self.unconfirmed: set[uuid.UUID] = set()
        self.gate: asyncio.Event | None = None

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise BusUnavailable("down")
        await asyncio.sleep(0.01)  # let replicas interleave
        ok = [e for e in envelopes if e.id not in self.unconfirmed]
        for e in ok:
            self.published[e.id] += 1
            self.order.append(e.id)
        if len(ok) < len(envelopes):
            raise PublishError("partial", frozenset(str(e.id) for e in ok))


def outbox() -> Outbox:
    return Outbox(outbox_table, service="intake", registry=platform_events())


async def add_events(db: Database, n: int) -> list[uuid.UUID]:
    box = outbox()
    ids = []
    async with db.transaction() as session:
        for _ in range(n):
            env = await box.emit(
                session,
                "icrs.case.erased",
                CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4()),
            )
            ids.append(env.id)
    return ids


def test_emit_checks_the_payload_schema_of_its_type() -> None:
    import pytest

    with pytest.raises(TypeError):
        outbox().envelope(
            "icrs.case.registered", CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4())
        )


async def test_two_replicas_publish_each_event_exactly_once(db: Database) -> None:
    ids = await add_events(db, 500)
    bus = CountingBus()
    relays = [OutboxRelay(db, outbox_table, bus, batch_size=25, sweep_after=0) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while (n := await relay.relay_once()) > 0:
            total += n
        return total

    counts = await asyncio.gather(*(drain(r) for r in relays))
    assert sum(counts) == 500
    assert all(c > 0 for c in counts), counts  # both replicas took batches
    assert set(bus.published) == set(ids)
    assert max(bus.published.values()) == 1
    assert await relays[0].pending() == 0


async def test_a_batch_is_published_in_the_order_it_was_written(db: Database) -> None:
    ids = await add_events(db, 60)
    bus = CountingBus()
    relay = OutboxRelay(db, outbox_table, bus, batch_size=25, sweep_after=0)
    while await relay.relay_once():
        pass
    assert bus.order == ids


async def test_events_wait_while_the_bus_is_down_and_partial_confirms_are_kept(
    db: Database,
) -> None:
    ids = await add_events(db, 10)
    bus = CountingBus()
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=0.05, sweep_after=0.1)
    bus.down = True
    await relay.start()
    try:
        await asyncio.sleep(0.5)
        assert await relay.pending() == 10
        bus.down = False
        bus.unconfirmed = {ids[3]}
        for _ in range(100):
            if await relay.pending() == 1:
                break
            await asyncio.sleep(0.05)
        assert await relay.pending() == 1  # the unconfirmed one waits
        async with db.sessions() as session:
            query = select(outbox_table.c.event_id, outbox_table.c.attempts)
            attempts = {row.event_id: row.attempts for row in await session.execute(query)}
        assert attempts[ids[3]] >= 1
        assert all(attempts[i] == 0 for i in ids if i != ids[3])
        bus.unconfirmed = set()
        for _ in range(100):
            if await relay.pending() == 0:
                break
            await asyncio.sleep(0.05)
        assert await relay.pending() == 0
    finally:
        await relay.stop()
    assert set(bus.published) == set(ids)
    assert max(bus.published.values()) == 1


async def test_events_waiting_for_a_consumer_flow_soon_after_it_starts(
    db: Database, amqp_url: str, bus_namespace: str
) -> None:
    """While a consumer's queue does not exist yet the relay asks again every half second,
    not ever less often as it does while the broker is away: events flow within a moment
    of the consumer's service starting, however long it took to come."""
    publisher = RabbitBus(amqp_url, namespace=bus_namespace, required=[("audit", "log")])
    consumer = RabbitBus(amqp_url, namespace=bus_namespace)
    await publisher.start()
    await consumer.start()
    relay = OutboxRelay(db, outbox_table, publisher)
    try:
        [waiting] = await add_events(db, 1)
        await relay.start()
        await asyncio.sleep(4)  # long enough for a backoff to have grown past 4 s
        assert await relay.pending() == 1
        seen = asyncio.Event()

        async def log(env: Envelope) -> None:
            if env.id == waiting:
                seen.set()

        subscribed = time.monotonic()
        await consumer.subscribe("audit", "log", ["#"], log)
        await asyncio.wait_for(seen.wait(), 5)
        assert time.monotonic() - subscribed < 1.5
    finally:
        await relay.stop()
        await consumer.delete_topology()
        await consumer.close()
        await publisher.close()


async def test_a_commit_hands_its_events_over_and_one_statement_marks_them_sent(
    db: Database,
) -> None:
    """No sweep can publish them here (it waits a minute): the relay publishes what the
    commit handed over, then marks it sent with one statement, no claim before."""
    bus = CountingBus()
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=60, sweep_after=60)
    await relay.start()
    try:
        await asyncio.sleep(0.2)  # its catching up at start is over
        with statements(db) as seen:
            ids = await add_events(db, 3)
            written = len(seen)  # one INSERT per event
            await eventually(lambda: len(seen) > written, within=3)
            await asyncio.sleep(0.2)
        assert set(bus.published) == set(ids)
        assert max(bus.published.values()) == 1
        assert all(s.sql.startswith("INSERT INTO outbox") for s in seen[:written])
        [mark] = [s.sql for s in seen[written:]]  # no claim: the events' ids, as handed over
        assert mark.startswith("UPDATE outbox SET sent_at")
        assert "WHERE outbox.event_id IN" in mark
        assert await relay.pending() == 0
    finally:
        await relay.stop()


async def test_a_sessions_rolled_back_events_are_not_handed_over(db: Database) -> None:
    bus = CountingBus()
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=60, sweep_after=60)
    box = outbox()
    await relay.start()
    try:
        async with db.sessions() as session:
            async with session.begin():
                doomed = await box.emit(
                    session,
                    "icrs.case.erased",
                    CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4()),
                )
                await session.rollback()
            async with session.begin():
                kept = await box.emit(
                    session,
                    "icrs.case.erased",
                    CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4()),
                )
        await eventually(lambda: kept.id in bus.published)
        await asyncio.sleep(0.2)
        assert doomed.id not in bus.published
        assert await relay.pending() == 0
    finally:
        await relay.stop()


async def test_an_event_committed_while_the_relay_catches_up_is_not_left_behind(
    db: Database,
) -> None:
    """A commit while the relay catches up hands nothing over: the table's claims take
    its events. One that comes after the claim looked, before it returned, must still be
    claimed, not left for a poll (a minute here)."""
    committed: list[uuid.UUID] = []

    class Racing(OutboxRelay):
        async def _relay_table(self) -> int:
            claimed = await super()._relay_table()
            if not committed:  # the first claim is over; it did not see this commit
                committed.extend(await add_events(db, 1))
            return claimed

    bus = CountingBus()
    relay = Racing(db, outbox_table, bus, poll_interval=60, sweep_after=60)
    await relay.start()
    try:
        await eventually(lambda: bool(committed) and committed[0] in bus.published, within=5)
        assert await relay.pending() == 0
    finally:
        await relay.stop()


async def test_what_the_bus_refused_after_commit_is_swept_once_it_is_back(
    db: Database,
) -> None:
    bus = CountingBus()
    bus.down = True
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=0.05, sweep_after=0.3)
    await relay.start()
    try:
        ids = await add_events(db, 5)
        await asyncio.sleep(0.3)
        assert await relay.pending() == 5  # handed over, refused, waiting in the table
        bus.down = False
        await eventually(lambda: set(bus.published) == set(ids), within=15)
        assert max(bus.published.values()) == 1
        await eventually(lambda: _pending_is(relay, 0))
    finally:
        await relay.stop()


async def test_a_relay_that_fell_behind_catches_up_from_the_table_in_order(
    db: Database,
) -> None:
    """Events handed over that waited longer than half of `sweep_after` are not published
    from memory: the relay publishes the table's unsent rows in the order written, and
    nothing twice."""
    bus = CountingBus()
    gate = bus.gate = asyncio.Event()
    # No poll comes to look at the table meanwhile: the relay sees for itself.
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=60, sweep_after=0.4)
    await relay.start()
    try:
        await asyncio.sleep(0.1)  # its catching up at start is over
        first = await add_events(db, 2)
        await asyncio.sleep(0.05)  # the relay is publishing the first commit's events
        later = await add_events(db, 3)
        await asyncio.sleep(0.5)  # the later ones waited past sweep_after / 2
        newest = await add_events(db, 2)  # handed over just now: they must not overtake
        gate.set()
        await eventually(lambda: len(bus.order) == 7, within=15)
        await asyncio.sleep(0.3)
        assert max(bus.published.values()) == 1
        assert bus.order == first + later + newest
        assert await relay.pending() == 0
    finally:
        await relay.stop()


async def test_a_relay_publishes_what_was_left_in_the_table_first_in_order(
    db: Database,
) -> None:
    """At start, what an earlier process left unsent goes out, in the order written,
    before what commits hand over."""
    bus = CountingBus()
    left = await add_events(db, 30)  # written before the relay runs, none handed over
    relay = OutboxRelay(db, outbox_table, bus, batch_size=10, poll_interval=60, sweep_after=60)
    await relay.start()
    try:
        new = await add_events(db, 3)
        await eventually(lambda: len(bus.order) == 33, within=10)
        await asyncio.sleep(0.2)
    finally:
        await relay.stop()
    assert bus.order[:30] == left
    assert sorted(bus.order[30:]) == sorted(new)
    assert max(bus.published.values()) == 1


async def _pending_is(relay: OutboxRelay, expected: int) -> bool:
    return await relay.pending() == expected


async def test_an_idle_poll_only_asks_whether_anything_was_left_behind(db: Database) -> None:
    bus = CountingBus()
    relay = OutboxRelay(db, outbox_table, bus, poll_interval=0.05, sweep_after=60)
    await relay.start()
    try:
        await asyncio.sleep(0.2)  # its catching up at start is over
        # Rows no commit of this process handed over, not old enough to be left behind.
        async with db.engine.begin() as conn:
            await conn.execute(
                outbox_table.insert(),
                [
                    {
                        "event_id": uuid.uuid4(),
                        "event_type": "icrs.case.erased",
                        "body": b"{}",
                        "created_at": datetime.now(UTC),
                        "attempts": 0,
                    }
                    for _ in range(2)
                ],
            )
        with statements(db) as seen:
            await asyncio.sleep(0.5)
    finally:
        await relay.stop()
    assert len(seen) >= 3  # it polled
    assert all(s.sql.startswith("SELECT outbox.id") for s in seen), seen
    assert not bus.published
    assert await relay.pending() == 2
