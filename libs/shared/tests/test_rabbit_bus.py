"""RabbitBus specifics on the real broker: reconnecting, and settling only on a live channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from icrs_shared.bus import BusUnavailable, RabbitBus
from icrs_shared.db import Database
from icrs_shared.events import Envelope
from icrs_shared.inbox import Inbox, once_per_event
from icrs_shared.testing import TcpProxy, eventually

from .conftest import effects, inbox_table


def event() -> Envelope:
    return Envelope(source="/icrs/test", type="icrs.case.updated", subject=str(uuid.uuid4()))


@contextlib.asynccontextmanager
async def through_proxy(
    amqp_url: str, bus_namespace: str, **options: Any
) -> AsyncIterator[tuple[RabbitBus, TcpProxy]]:
    """A bus reaching the broker through a TCP proxy the test can cut; afterwards the
    connection is restored and the bus's topology deleted."""
    proxy = TcpProxy.to(amqp_url, 5672)
    await proxy.start()
    bus = RabbitBus(proxy.url(amqp_url), namespace=bus_namespace, **options)
    await bus.start()
    try:
        yield bus, proxy
    finally:
        if proxy.is_cut:
            await proxy.restore()
        await eventually(bus.ready, within=30)
        await bus.delete_topology()
        await bus.close()
        await proxy.close()


async def test_a_delivery_from_a_dead_channel_is_not_acked_and_comes_back_once(
    amqp_url: str, bus_namespace: str, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[uuid.UUID] = []
    release = asyncio.Event()

    async def slow_effect(session: AsyncSession, env: Envelope) -> None:
        await session.execute(effects.insert().values(event_id=str(env.id), note="x"))
        calls.append(env.id)
        await release.wait()

    handler = once_per_event(db, Inbox(inbox_table), "slow", slow_effect)
    attempts: list[uuid.UUID] = []

    async def tracked(env: Envelope) -> None:
        attempts.append(env.id)
        await handler(env)

    async with through_proxy(amqp_url, bus_namespace, delivery_limit=3) as (bus, proxy):
        await bus.subscribe("t", "slow", ["case.*"], tracked)
        env = event()
        await bus.publish([env])
        await eventually(lambda: len(attempts) == 1)
        await proxy.cut()  # the channel that delivered it dies while the handler works
        with caplog.at_level(logging.WARNING, logger="icrs_shared.bus.rabbit"):
            release.set()
            await eventually(lambda: "its channel is gone" in caplog.text)
        await proxy.restore()
        await eventually(lambda: len(attempts) == 2, within=30)  # redelivered after reconnect

        async def count() -> int:
            async with db.sessions() as s:
                query = select(func.count()).select_from(effects)
                return int((await s.execute(query)).scalar_one())

        assert await count() == 1  # the inbox dropped the redelivery
        assert calls == [env.id]
        await eventually(bus.ready)


async def test_publish_while_disconnected_raises_and_start_keeps_trying(
    amqp_url: str, bus_namespace: str
) -> None:
    proxy = TcpProxy.to(amqp_url, 5672)
    await proxy.start()
    await proxy.cut()
    bus = RabbitBus(proxy.url(amqp_url), namespace=bus_namespace)
    await bus.start()  # does not raise: it keeps trying in the background
    try:
        assert not await bus.ready()
        with pytest.raises(BusUnavailable):
            await bus.publish([event()])
        await proxy.restore()
        await eventually(bus.ready, within=30)
        await bus.publish([event()])
    finally:
        await bus.delete_topology()
        await bus.close()
        await proxy.close()


async def test_nothing_is_published_before_a_required_queue_exists(
    amqp_url: str, bus_namespace: str
) -> None:
    # A topic exchange drops what no queue is bound for: an event published before the
    # audit log's queue exists would never reach the log. It waits instead.
    publisher = RabbitBus(amqp_url, namespace=bus_namespace, required=[("audit", "log")])
    consumer = RabbitBus(amqp_url, namespace=bus_namespace)
    await publisher.start()
    await consumer.start()
    try:
        early = event()
        with pytest.raises(BusUnavailable, match="does not exist yet"):
            await publisher.publish([early])
        seen: list[uuid.UUID] = []

        async def log(env: Envelope) -> None:
            seen.append(env.id)

        await consumer.subscribe("audit", "log", ["#"], log)
        await publisher.publish([early])
        await eventually(lambda: seen == [early.id])
    finally:
        await consumer.delete_topology()
        await consumer.close()
        await publisher.close()


@pytest.mark.parametrize(("concurrency", "expected"), [(None, 4), (12, 12)])
async def test_a_subscription_handles_as_many_deliveries_at_once_as_it_asks(
    amqp_url: str, bus_namespace: str, concurrency: int | None, expected: int
) -> None:
    # The bus's default is 4 here; a subscription that batches (the audit log) asks more.
    bus = RabbitBus(amqp_url, namespace=bus_namespace, prefetch=2, concurrency=4)
    await bus.start()
    running = 0
    most = 0
    release = asyncio.Event()

    async def handler(_: Envelope) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    try:
        await bus.subscribe("t", "many", ["case.*"], handler, concurrency=concurrency)
        await bus.publish([event() for _ in range(20)])
        await eventually(lambda: most == expected)
        await asyncio.sleep(0.3)  # no more than that come
        assert most == expected
        release.set()
        await eventually(lambda: running == 0)
    finally:
        release.set()
        await bus.delete_topology()
        await bus.close()


class _CutInFlight:
    """A subscription whose connection to the broker is cut while each of its first
    `cuts` deliveries is in its handler; the deliveries after that are handled."""

    def __init__(self, proxy: TcpProxy, cuts: int) -> None:
        self.proxy = proxy
        self.cuts = cuts
        self.attempts: list[uuid.UUID] = []
        self.handled: list[uuid.UUID] = []
        self._released = [asyncio.Event() for _ in range(cuts)]

    async def handler(self, env: Envelope) -> None:
        self.attempts.append(env.id)
        n = len(self.attempts)
        if n <= self.cuts:
            await self._released[n - 1].wait()
            return  # its ack finds the channel gone
        self.handled.append(env.id)

    async def send_and_cut(self, bus: RabbitBus, consumer: str) -> Envelope:
        """Subscribe `consumer`, publish one event to it and cut while it is handled."""
        await bus.subscribe("t", consumer, ["case.*"], self.handler)
        env = event()
        await bus.publish([env])
        for n in range(1, self.cuts + 1):
            await eventually(lambda n=n: len(self.attempts) == n, within=30)
            await self.proxy.cut()
            self._released[n - 1].set()
            await self.proxy.restore()
        return env


async def test_connection_losses_in_flight_do_not_spend_the_delivery_limit(
    amqp_url: str, bus_namespace: str
) -> None:
    # RabbitMQ counts a delivery that comes back with its closed connection as a delivery;
    # with a limit of 2, the third such return would park a message no handler failed on.
    async with through_proxy(amqp_url, bus_namespace, delivery_limit=2) as (bus, proxy):
        flight = _CutInFlight(proxy, cuts=4)
        env = await flight.send_and_cut(bus, "flaky")
        await eventually(lambda: flight.handled == [env.id], within=30)
        assert flight.attempts == [env.id] * 5
        await eventually(bus.ready, within=30)
        assert await bus.parked("t") == []


async def test_a_message_that_keeps_coming_back_unanswered_is_parked_in_the_end(
    amqp_url: str, bus_namespace: str
) -> None:
    # A process killed in its handler every time looks the same to the broker: the
    # renewals stop at RETURNS_PER_LIMIT times the limit (4 with a limit of 1), and the
    # broker's own limit parks it on the next return.
    async with through_proxy(amqp_url, bus_namespace, delivery_limit=1) as (bus, proxy):
        flight = _CutInFlight(proxy, cuts=5)
        env = await flight.send_and_cut(bus, "doomed")

        async def parked() -> bool:
            try:  # the bus may not have noticed the last cut yet
                return len(await bus.parked("t")) == 1
            except Exception:
                return False

        await eventually(parked, within=30)
        [record] = await bus.parked("t")
        assert record.event_id == str(env.id)
        assert record.reason == "delivery_limit"
        assert record.deliveries == len(flight.attempts) == 5
        assert record.extra["returned"] == "3"
        assert record.extra["failed"] == "0"
        assert flight.handled == []


async def test_parked_messages_go_back_to_their_queue_once_their_handler_can_take_them(
    rabbit_bus: RabbitBus,
) -> None:
    bus = rabbit_bus
    broken = True
    attempts: list[uuid.UUID] = []
    handled: list[uuid.UUID] = []

    async def handler(env: Envelope) -> None:
        attempts.append(env.id)
        if broken:
            raise RuntimeError("a bug, fixed later")
        handled.append(env.id)

    await bus.subscribe("t", "fixed", ["case.*"], handler)
    first, second = event(), event()
    await bus.publish([first, second])

    async def parked(n: int) -> bool:
        return len(await bus.parked("t")) == n

    await eventually(lambda: parked(2), within=20)
    broken = False
    attempts.clear()
    [back] = await bus.replay("t", {str(first.id)})
    assert back.event_id == str(first.id)
    await eventually(lambda: handled == [first.id])
    [left] = await bus.parked("t")  # the other one stays where it was
    assert left.event_id == str(second.id)
    assert left.reason == "delivery_limit"
    assert [p.event_id for p in await bus.replay("t")] == [str(second.id)]
    await eventually(lambda: handled == [first.id, second.id])
    assert attempts == [first.id, second.id]  # each handled at its first delivery back
    assert await bus.parked("t") == []
    assert await bus.replay("t") == []
