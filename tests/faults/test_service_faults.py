"""Faults of the services and of their connections, while cases stream in: each service
killed with SIGKILL in turn and started again; the broker connection cut and slowed; the
database refusing connections. Afterwards every case is referred exactly once, every
event is in the audit log exactly once, the log verifies, and no message is left behind.

One platform serves the scenarios in turn (each checks its own cases, and the whole log
and every queue): every service reaches RabbitMQ through one TCP proxy and PostgreSQL
through another, which the scenarios cut, slow and restore.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio

from icrs.load import CaseStream
from icrs.processes import ORDER, PlatformClient, ProcessPlatform
from icrs.tally import Parties, Reckoner, Tally
from icrs_shared.testing import TcpProxy
from icrs_shared.testing.broker import local_node_queues

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]


@dataclass
class Rig:
    platform: ProcessPlatform
    client: PlatformClient
    parties: Parties
    reckoner: Reckoner
    broker: TcpProxy
    database: TcpProxy
    _first: Iterator[int] = field(default_factory=lambda: itertools.count(1, 10_000))

    def stream(self) -> CaseStream:
        """Cases of people no earlier scenario registered."""
        return CaseStream(self.client, self.parties.requester, first=next(self._first))

    async def settle(self, stream: CaseStream, scenario: str) -> Tally:
        tally = await self.reckoner.settle(stream.cases, scenario=scenario)
        print(f"\n{tally.report()}\n  requests sent again: {dict(stream.retries)}")
        return tally


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(
    postgres_server_url: str,
    amqp_url: str,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Rig]:
    broker = TcpProxy.to(amqp_url, 5672)
    database = TcpProxy.to(postgres_server_url, 5432)
    await broker.start()
    await database.start()
    platform = ProcessPlatform(
        postgres_server_url,
        broker.url(amqp_url),
        Path(tmp_path_factory.mktemp("faults")),
        env=service_env,
        database_via={name: f"127.0.0.1:{database.port}" for name in ORDER},
        start_together=True,
    )
    queues = None
    try:
        async with platform, platform.client(timeout=10) as client:
            try:
                parties = await Parties.register(client)
                queues = await local_node_queues(amqp_url, platform.namespace)
                reckoner = Reckoner(platform, client, parties, amqp_url=amqp_url, queues=queues)
                yield Rig(platform, client, parties, reckoner, broker, database)
            finally:
                await platform.stop_together()
    finally:
        await broker.close()
        await database.close()


def assert_clean(tally: Tally) -> None:
    assert tally.problems == [], tally.report()
    assert (tally.lost, tally.duplicated, tally.parked) == (0, 0, 0)
    assert tally.delivered == tally.sent > 0
    assert tally.logged == tally.events


async def test_each_service_killed_and_started_again(rig: Rig) -> None:
    async with rig.stream() as stream:
        await stream.wait_for(6)
        for name in ORDER:
            process = rig.platform.processes(name)[0]
            process.kill()
            await asyncio.sleep(0.5)  # the others go on meanwhile
            process.start()
            await process.ready()
            await stream.wait_for(stream.sent + 3)
    assert_clean(await rig.settle(stream, "kill -9 each service"))


async def test_broker_connection_cut_and_slowed(rig: Rig) -> None:
    async with rig.stream() as stream:
        await stream.wait_for(6)
        await rig.broker.cut()
        await stream.wait_for(stream.sent + 6)
        await rig.broker.restore()
        await stream.wait_for(stream.sent + 4)
        rig.broker.delay = 0.2
        await stream.wait_for(stream.sent + 8)
        await rig.broker.cut()
        await asyncio.sleep(1.0)
        await rig.broker.restore()
        await stream.wait_for(stream.sent + 4)
        rig.broker.delay = 0.0
        await stream.wait_for(stream.sent + 4)
    assert_clean(await rig.settle(stream, "broker connection cut and slowed"))


async def test_database_refusing_connections(rig: Rig) -> None:
    async with rig.stream() as stream:
        await stream.wait_for(6)
        await rig.database.cut()
        await asyncio.sleep(4.0)
        await rig.database.restore()
        await stream.wait_for(stream.sent + 6)
        await rig.database.cut()
        await asyncio.sleep(2.0)
        await rig.database.restore()
        await stream.wait_for(stream.sent + 6)
    assert stream.retries, "the outage should have made the stream send requests again"
    assert_clean(await rig.settle(stream, "database refusing connections"))
