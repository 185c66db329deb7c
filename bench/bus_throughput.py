"""Messaging throughput on the real broker and database: the ceiling (raw aio-pika
confirmed publish into a quorum queue, consumed with acks) beside the platform's own
path (outbox rows committed in PostgreSQL, relayed by OutboxRelay through RabbitBus to a
consumer behind the inbox).

    uv run python bench/bus_throughput.py [--events 20000] [--out bench/results/bus.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import psutil
from sqlalchemy import MetaData

from icrs_shared.bus import RabbitBus
from icrs_shared.db import Database
from icrs_shared.events import Envelope, platform_events
from icrs_shared.events.catalog import CaseErased
from icrs_shared.inbox import Inbox, once_per_event
from icrs_shared.outbox import Outbox, OutboxRelay
from icrs_shared.tables import messaging_tables
from icrs_shared.testing.databases import create_database, drop_database

AMQP = os.environ.get("ICRS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG = os.environ.get(
    "ICRS_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def envelope() -> Envelope:
    data = CaseErased(case_id=uuid.uuid4(), organization_id=uuid.uuid4())
    return Envelope(
        source="/icrs/bench", type="icrs.case.erased", data=data.model_dump(mode="json")
    )


def broker_process() -> psutil.Process | None:
    """The local RabbitMQ's Erlang VM, if this machine runs it."""
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    return None


def cpu_used(proc: psutil.Process | None) -> float:
    """CPU seconds a process has used so far (0 if it is not there to ask)."""
    if proc is None:
        return 0.0
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


class CpuPerMessage:
    """CPU milliseconds per message, of this process (the client) and of the broker,
    between `start` and `per`."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.broker = broker_process()
        self.start()

    def start(self) -> None:
        self.before = cpu_used(self.me), cpu_used(self.broker)

    def per(self, n: int) -> dict[str, float]:
        client, broker = cpu_used(self.me) - self.before[0], cpu_used(self.broker) - self.before[1]
        return {"client": round(1000 * client / n, 4), "rabbitmq": round(1000 * broker / n, 4)}


async def raw_ceiling(n: int, batch: int) -> dict[str, Any]:
    """aio-pika alone: confirmed publishes (pipelined per batch), consumed with acks; with
    the CPU each message cost the client and the broker, in each direction."""
    cpu = CpuPerMessage()
    conn = await aio_pika.connect_robust(AMQP)
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    body = envelope().to_json()
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        start = time.perf_counter()
        cpu.start()
        for i in range(0, n, batch):
            await asyncio.gather(
                *(
                    ch.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=name,
                    )
                    for _ in range(min(batch, n - i))
                )
            )
        published = time.perf_counter() - start
        cpu_publish = cpu.per(n)
        consumer_ch = await conn.channel()
        await consumer_ch.set_qos(prefetch_count=200)
        q = await consumer_ch.get_queue(name)
        done = asyncio.Event()
        count = 0

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await msg.ack()
            count += 1
            if count == n:
                done.set()

        start = time.perf_counter()
        cpu.start()
        await q.consume(on_message)
        await done.wait()
        consumed = time.perf_counter() - start
        cpu_consume = cpu.per(n)
        await ch.queue_delete(name)
    return {
        "publish_per_s": n / published,
        "consume_per_s": n / consumed,
        "cpu_ms_per_publish": cpu_publish,
        "cpu_ms_per_consume": cpu_consume,
    }


async def platform_path(n: int, batch: int) -> dict[str, float]:
    """Outbox in PostgreSQL -> OutboxRelay -> RabbitBus -> consumer with the inbox."""
    url = await create_database(PG, prefix="icrs_bench")
    meta = MetaData()
    outbox_table, inbox_table = messaging_tables(meta)
    db = Database(url)
    bus = RabbitBus(AMQP, namespace=f"bench-{uuid.uuid4().hex[:8]}.", prefetch=200)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        outbox = Outbox(outbox_table, service="bench", registry=platform_events())
        start = time.perf_counter()
        for i in range(0, n, 500):
            async with db.transaction() as session:
                await outbox.add(session, *(envelope() for _ in range(min(500, n - i))))
        written = time.perf_counter() - start

        await bus.start()
        received = 0
        done = asyncio.Event()

        async def effect(session: Any, env: Envelope) -> None:
            nonlocal received
            received += 1
            if received == n:
                done.set()

        handler = once_per_event(db, Inbox(inbox_table), "bench", effect)
        await bus.subscribe("bench", "sink", ["case.*"], handler)
        relay = OutboxRelay(
            db, outbox_table, bus, batch_size=batch, poll_interval=0.05, sweep_after=0
        )
        start = time.perf_counter()
        await relay.start()
        await done.wait()
        elapsed = time.perf_counter() - start
        await relay.stop()
        return {
            "outbox_write_per_s": n / written,
            "relay_to_consumer_per_s": n / elapsed,
        }
    finally:
        await bus.delete_topology()
        await bus.close()
        await db.dispose()
        await drop_database(url)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/bus.json"))
    args = parser.parse_args()
    raw = await raw_ceiling(args.events, args.batch)
    ours = await platform_path(args.events, args.batch)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "events": args.events,
        "batch": args.batch,
        "raw_aio_pika": raw,
        "platform": ours,
        "platform_vs_raw_publish": ours["relay_to_consumer_per_s"] / raw["publish_per_s"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
