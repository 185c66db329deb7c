"""RabbitMQ restarted while cases stream in. The platform runs on a RabbitMQ node of the
test's own (the shared broker is never touched): stopped as an operator stops it and
started again on the same data, its quorum queues and persistent messages survive, the
services reconnect, and afterwards every case is referred exactly once, every event is in
the audit log exactly once, the log verifies, and no message is left behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from icrs.load import CaseStream
from icrs.processes import ProcessPlatform
from icrs.tally import Parties, Reckoner
from icrs_shared.testing.broker import BrokerNode, QueueState, rabbitmq_installed

pytestmark = [
    pytest.mark.skipif(
        not rabbitmq_installed(),
        reason="rabbitmq-server is not installed: restarting RabbitMQ needs a node of the "
        "test's own, never the shared broker",
    ),
    pytest.mark.timeout(400),
]


@pytest_asyncio.fixture
async def node() -> AsyncIterator[BrokerNode]:
    node = BrokerNode()
    try:
        await node.start()
        yield node
    finally:
        await node.close()


async def test_rabbitmq_restarted_while_cases_flow(
    node: BrokerNode,
    postgres_server_url: str,
    service_env: dict[str, str],
    tmp_path: Path,
) -> None:
    async with (
        ProcessPlatform(
            postgres_server_url, node.url, tmp_path, env=service_env, start_together=True
        ) as platform,
        platform.client(timeout=10) as client,
    ):
        parties = await Parties.register(client)

        async def queues() -> list[QueueState]:
            return await node.queues(prefix=platform.namespace)

        reckoner = Reckoner(platform, client, parties, amqp_url=node.url, queues=queues)
        async with CaseStream(client, parties.requester, first=1) as stream:
            await stream.wait_for(8)
            await node.stop()
            await stream.wait_for(stream.sent + 6)
            await node.start()
            await stream.wait_for(stream.sent + 8)
        tally = await reckoner.settle(stream.cases, scenario="RabbitMQ restarted")
        print(f"\n{tally.report()}\n  requests sent again: {dict(stream.retries)}")
        await platform.stop_together()
    # The platform took its queues with it: a broker others use keeps none of them.
    assert await node.queues(prefix=platform.namespace) == []
    assert tally.problems == [], tally.report()
    assert (tally.lost, tally.duplicated, tally.parked) == (0, 0, 0)
    assert tally.delivered == tally.sent > 0
    assert tally.logged == tally.events
